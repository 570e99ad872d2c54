"""The rule kinds and the rules file that configures them.

A rule kind is one small pydantic class with a `kind` literal, plugged into `RuleSpec` below; its
`compile(items)` returns the rule bound to one model's items:

- a `SegmentRule` blocks items by attributes many customers share (age, income, residency, KYC,
  risk profile): `key(customer)` names the attributes it depends on, so the step computes its mask
  once per distinct key and reuses it (policy/step.py);
- a `PersonalRule` blocks the customer's own items (holdings, applications, contact limits,
  dismissals): `rows(customer, now)`, a handful of rows passed to the kernel as exclusions.

A rule that reads recent events says which with `activity()` (event types, look-back); the service
reads them once per request for all rules (`Customer.activity`, service/customers.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from finverse_reco.customers import KycStatus
from finverse_reco.events import ID_PATTERN, EventType
from finverse_reco.policy import contact
from finverse_reco.policy.customer import Customer
from finverse_reco.policy.items import KYC_RANK, ItemFacts

CategoryName = Annotated[str, Field(min_length=1, max_length=64)]
ChannelName = Annotated[str, Field(max_length=64, pattern=ID_PATTERN)]


class SegmentRule(Protocol):
    name: str

    def key(self, customer: Customer) -> Hashable: ...

    def blocked(self, customer: Customer) -> np.ndarray:
        """(n,) bool: the items this rule keeps from the customer."""


class PersonalRule(Protocol):
    name: str

    def rows(self, customer: Customer, now: datetime) -> np.ndarray:
        """Ascending unique item rows this rule keeps from the customer."""


@dataclass(frozen=True, slots=True)
class ActivityNeed:
    """Events a rule reads: of these types, no older than `lookback`."""

    types: frozenset[EventType]
    lookback: timedelta


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def activity(self) -> ActivityNeed | None:
        return None


def _rows_of(items: ItemFacts, product_ids: Iterable[str], repeatable: np.ndarray) -> np.ndarray:
    """The rows of these products, ascending and once each, leaving out repeatable ones."""
    rows = items.rows_by_id
    found = {row for p in product_ids if (row := rows.get(p)) is not None and not repeatable[row]}
    return np.array(sorted(found), dtype=np.int64)


class HoldingsRule(_Rule):
    """Products the customer holds are not offered again, except repeatable categories."""

    kind: Literal["holdings"]
    repeatable_categories: tuple[CategoryName, ...] = ()

    def compile(self, items: ItemFacts) -> PersonalRule:
        repeatable = items.category_mask(self.repeatable_categories)
        return _Personal("holdings", items, repeatable, _holdings)


class AppliedRule(_Rule):
    """Products applied for are not offered again, at once: the applications the store holds
    (also those that arrived after the last training), except repeatable categories."""

    kind: Literal["applied"]
    event_types: tuple[EventType, ...] = (EventType.APPLICATION_SUBMIT,)
    lookback_days: int = Field(365, ge=1, le=3650)
    repeatable_categories: tuple[CategoryName, ...] = ()

    def activity(self) -> ActivityNeed:
        return ActivityNeed(frozenset(self.event_types), timedelta(days=self.lookback_days))

    def compile(self, items: ItemFacts) -> PersonalRule:
        kinds = frozenset(t.value for t in self.event_types)
        lookback = self.lookback_days * contact.DAY_SECONDS

        def applied(customer: Customer, now: datetime) -> list[str]:
            # The customer's activity may reach further back than this rule looks, when another
            # rule (a policy variant's) asks for more of these events: only its own window counts.
            since = now.timestamp() - lookback
            return [
                p
                for e in customer.activity
                if e.type in kinds and e.timestamp >= since
                for p in e.product_ids
            ]

        repeatable = items.category_mask(self.repeatable_categories)
        return _Personal("applied", items, repeatable, applied)


class ContactLimitRule(_Rule):
    """A product is not shown after `max_impressions` impressions in `days` without a click (a
    click starts the count again). With a `channel`: only impressions on that channel count, and
    only lists requested for that channel apply it; with a `category`: products of that category
    only."""

    kind: Literal["contact_limit"]
    max_impressions: int = Field(3, ge=1, le=1000)
    days: float = Field(7.0, gt=0, le=365)
    channel: ChannelName | None = None
    category: CategoryName | None = None

    def activity(self) -> ActivityNeed:
        types = frozenset({EventType.IMPRESSION, EventType.PRODUCT_CLICK})
        return ActivityNeed(types, timedelta(days=self.days))

    def compile(self, items: ItemFacts) -> PersonalRule:
        other = (
            ~items.category_mask([self.category])
            if self.category is not None
            else np.zeros(items.n, dtype=bool)
        )

        def shown_enough(customer: Customer, now: datetime) -> set[str]:
            if self.channel is not None and customer.channel != self.channel:
                return set()
            return contact.over_contact_limit(
                customer.activity, now.timestamp(), self.max_impressions, self.days, self.channel
            )

        return _Personal("contact_limit", items, other, shown_enough)


class DismissedRule(_Rule):
    """A product the customer dismissed is not shown to them for `days`."""

    kind: Literal["dismissed"]
    days: float = Field(30.0, gt=0, le=3650)

    def activity(self) -> ActivityNeed:
        return ActivityNeed(frozenset({EventType.DISMISS}), timedelta(days=self.days))

    def compile(self, items: ItemFacts) -> PersonalRule:
        def dismissed(customer: Customer, now: datetime) -> set[str]:
            return contact.dismissed(customer.activity, now.timestamp(), self.days)

        return _Personal("dismissed", items, np.zeros(items.n, dtype=bool), dismissed)


class Requirements(BaseModel):
    """Category-level requirements, on top of each product's own (the stricter one wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_age: int | None = Field(None, ge=0, le=150)
    min_income: float | None = Field(None, ge=0)
    required_kyc: KycStatus | None = None
    residencies: tuple[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], ...] | None = None


class EligibilityRule(_Rule):
    """Minimum age and income, KYC status, residency and region: the product's requirements and
    its category's. A requirement on an attribute the service does not know for the customer
    blocks the product in `fail_closed_categories` and passes it elsewhere."""

    kind: Literal["eligibility"]
    fail_closed_categories: tuple[CategoryName, ...] = ("credit_card", "personal_loan", "mortgage")
    categories: dict[CategoryName, Requirements] = Field(default_factory=dict)

    def compile(self, items: ItemFacts) -> SegmentRule:
        return _Eligibility.of(self, items)


class SuitabilityRule(_Rule):
    """Products whose risk level is above the customer's risk profile are not shown. Without a
    questionnaire result the profile is derived, conservatively: `unknown_risk_profile`, and
    `senior_risk_profile` from `senior_age` (or for an unknown age). Products of unknown risk
    pass."""

    kind: Literal["suitability"]
    unknown_risk_profile: int = Field(2, ge=1, le=5)
    senior_age: int = Field(65, ge=0, le=150)
    senior_risk_profile: int = Field(1, ge=1, le=5)

    def profile_of(self, customer: Customer) -> int:
        if customer.risk_profile is not None:
            return customer.risk_profile
        if customer.age is not None and customer.age < self.senior_age:
            return self.unknown_risk_profile
        return min(self.unknown_risk_profile, self.senior_risk_profile)

    def compile(self, items: ItemFacts) -> SegmentRule:
        return _Suitability(self, items.risk_level)


RuleSpec = Annotated[
    HoldingsRule
    | AppliedRule
    | ContactLimitRule
    | DismissedRule
    | EligibilityRule
    | SuitabilityRule,
    Field(discriminator="kind"),
]


class Diversity(BaseModel):
    """At most this many per category and per institution (0: no cap), filled from further down:
    the caps are applied walking the best `window` × limit eligible products, best first. A soft
    rule: when those cannot fill the list within the caps, the best of the ones the caps skipped
    fill it (a catalog of one category still gets full lists)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_per_category: int = Field(0, ge=0, le=100)
    max_per_institution: int = Field(0, ge=0, le=100)
    window: int = Field(3, ge=1, le=20)


class RulesFile(BaseModel):
    """The rules file (TOML): a version every response carries, the rules, the diversity caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:+-]+$")]
    rules: tuple[RuleSpec, ...] = ()
    diversity: Diversity = Diversity()


# --- compiled rules ---------------------------------------------------------------------------


def _holdings(customer: Customer, now: datetime) -> tuple[str, ...]:
    return customer.holdings


@dataclass(frozen=True, slots=True)
class _Personal:
    name: str
    items: ItemFacts
    repeatable: np.ndarray  # (n,) bool: items the rule leaves alone (repeatable categories)
    products: Callable[[Customer, datetime], Iterable[str]]

    def rows(self, customer: Customer, now: datetime) -> np.ndarray:
        return _rows_of(self.items, self.products(customer, now), self.repeatable)


@dataclass(frozen=True, slots=True)
class _Eligibility:
    name: str
    items: ItemFacts
    min_age: np.ndarray
    min_income: np.ndarray
    required_kyc: np.ndarray
    fail_closed: np.ndarray  # (n,) bool: the item's category fails closed
    category_residencies: np.ndarray  # (n,) int code into items.residency_sets, -1: none
    residency_sets: tuple[frozenset[str], ...]
    ages: list[float]  # the distinct age requirements, ascending (for the cache key)
    incomes: list[float]

    @classmethod
    def of(cls, rule: EligibilityRule, items: ItemFacts) -> _Eligibility:
        min_age, min_income = items.min_age.copy(), items.min_income.copy()
        kyc = items.required_kyc.astype(np.int8).copy()
        sets = list(items.residency_sets)
        category_sets = np.full(items.n, -1, dtype=np.int32)
        for category, needs in rule.categories.items():
            members = items.category_mask([category])
            if needs.min_age is not None:
                min_age[members] = np.maximum(min_age[members], needs.min_age)
            if needs.min_income is not None:
                min_income[members] = np.maximum(min_income[members], needs.min_income)
            if needs.required_kyc is not None:
                kyc[members] = np.maximum(kyc[members], KYC_RANK[needs.required_kyc])
            if needs.residencies is not None:
                sets.append(frozenset(needs.residencies))
                category_sets[members] = len(sets) - 1
        return cls(
            name="eligibility",
            items=items,
            min_age=np.nan_to_num(min_age),
            min_income=np.nan_to_num(min_income),
            required_kyc=kyc,
            fail_closed=items.category_mask(rule.fail_closed_categories),
            category_residencies=category_sets,
            residency_sets=tuple(sets),
            ages=np.unique(np.nan_to_num(min_age)).tolist(),
            incomes=np.unique(np.nan_to_num(min_income)).tolist(),
        )

    def key(self, customer: Customer) -> Hashable:
        """Customers whose attributes pass the same requirements share a key: an age or income
        counts only by how many of the distinct requirements it meets."""
        age = None if customer.age is None else bisect_right(self.ages, customer.age)
        income = None if customer.income is None else bisect_right(self.incomes, customer.income)
        return (age, income, customer.kyc_status, customer.residency, customer.region)

    def blocked(self, customer: Customer) -> np.ndarray:
        items, closed = self.items, self.fail_closed
        blocked = _requirement(self.min_age, customer.age, closed)
        blocked |= _requirement(self.min_income, customer.income, closed)
        kyc = None if customer.kyc_status is None else KYC_RANK[customer.kyc_status]
        blocked |= _requirement(self.required_kyc, kyc, closed)
        for codes, sets, value in (
            (items.residencies, items.residency_sets, customer.residency),
            (self.category_residencies, self.residency_sets, customer.residency),
            (items.regions, items.region_sets, customer.region),
        ):
            restricted = codes >= 0
            if value is None:
                blocked |= restricted & closed
            else:
                blocked |= ~items.in_sets(codes, sets, value)
        return blocked


def _requirement(required: np.ndarray, value: float | None, fail_closed: np.ndarray) -> np.ndarray:
    """Items whose requirement `value` does not meet; an unknown value meets none of the items
    that fail closed and all the others."""
    if value is None:
        return (required > 0) & fail_closed
    return required > value


@dataclass(frozen=True, slots=True)
class _Suitability:
    rule: SuitabilityRule
    risk_level: np.ndarray
    name: str = "suitability"

    def key(self, customer: Customer) -> Hashable:
        return self.rule.profile_of(customer)

    def blocked(self, customer: Customer) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.risk_level > self.rule.profile_of(customer)  # NaN (unknown) passes
