"""The policy step between ranking and response (docs/POLICY.md): exclusions, eligibility,
suitability, availability, diversity and the caller's filters, from a versioned rules file."""

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
)

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
    "RulesFile",
    "load_rules",
]
