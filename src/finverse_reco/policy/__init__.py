"""The policy step between ranking and response (docs/POLICY.md): exclusions, eligibility,
suitability, availability, diversity and the caller's filters, from a versioned rules file; an
experiment arm's policy variant tightens it (`variants.py`)."""

from finverse_reco.policy.customer import Customer
from finverse_reco.policy.items import ItemFacts
from finverse_reco.policy.loading import DEFAULT_RULES_FILE, PolicyFileError, load_rules
from finverse_reco.policy.rules import RulesFile
from finverse_reco.policy.step import (
    NO_CALLER_FILTERS,
    BoundPolicy,
    CallerFilters,
    Filters,
    Policy,
    activity_windows,
)
from finverse_reco.policy.variants import PolicyVariants, check_variant_name, tightened

__all__ = [
    "DEFAULT_RULES_FILE",
    "NO_CALLER_FILTERS",
    "BoundPolicy",
    "CallerFilters",
    "Customer",
    "Filters",
    "ItemFacts",
    "Policy",
    "PolicyFileError",
    "PolicyVariants",
    "RulesFile",
    "activity_windows",
    "check_variant_name",
    "load_rules",
    "tightened",
]
