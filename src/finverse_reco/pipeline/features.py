"""Feature vocabulary: how users and products become named features, and how a row is balanced.

Names are `group:value` (`age_group:25-34`, `category:loans`, `interest_rate:3-5`). The pipeline uses
these functions to build the training matrices and the serving index uses the same ones to place a
new user or product, so a name means the same thing on both sides.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from finverse_reco.products import Product

DEMOGRAPHIC_FIELDS = ("age_group", "income_range", "location")
USER_IDENTITY_PREFIX = "user:"
ITEM_IDENTITY_PREFIX = "item:"

# Words that say nothing about what a user looks for; everything else in a query may.
_STOPWORD_TEXT = """a an and are as at be best by can for from get how in is it me my of on or the
to what with you your"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_TERM_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class FeatureConfig:
    """Which side features exist and how much of a row the identity feature takes.

    `user_identity_weight` / `item_identity_weight` are the identity feature's share of a user / item
    row that also has side features (each row sums to 1): higher keeps warm users/items closer to
    their own collaborative vector, lower leans on the shared features that cold users/items also
    have. `finverse-reco tune` chooses them (a params file carries them to training).
    """

    user_identity_weight: float = 0.5
    item_identity_weight: float = 0.5
    interest_rate_edges: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0)
    annual_fee_edges: tuple[float, ...] = (1.0, 50.0, 100.0, 250.0, 500.0)
    term_months_edges: tuple[float, ...] = (6.0, 12.0, 24.0, 60.0, 120.0, 240.0)
    min_age_edges: tuple[float, ...] = (18.0, 21.0, 25.0, 30.0, 40.0, 60.0)
    min_income_edges: tuple[float, ...] = (15e3, 30e3, 50e3, 75e3, 100e3, 150e3)
    # Events per user at which the activity bucket changes: bucket 0 below 3, 1 from 3, …
    activity_edges: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    # Per user, only the strongest engaged categories / institutions become features.
    max_engaged_per_user: int = 3
    max_search_terms_per_user: int = 10
    # A query term becomes a feature only once this many users searched it (keeps typos out).
    min_search_term_users: int = 2
    # Segments (demographic values) with popularity lists: at least this many users, at most this many.
    min_segment_users: int = 5
    max_segments: int = 64
    # The customer attributes (demographics, a dataset's label columns) that may become model
    # features and popularity segments; None: all. Without `location`, neither training nor
    # serving uses where a customer lives (docs/FAIRNESS.md).
    user_attributes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("user_identity_weight", "item_identity_weight"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(("max_", "min_")) and isinstance(value, int) and value < 1:
                raise ValueError(f"{f.name} must be >= 1")
            if f.name.endswith("_edges") and (not value or list(value) != sorted(set(value))):
                raise ValueError(f"{f.name} must be strictly increasing and not empty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def allows(self, attribute: str) -> bool:
        return self.user_attributes is None or attribute in self.user_attributes

    def allowed_demographics(self, demographics: Mapping[str, str] | None) -> dict[str, str]:
        """`demographics` without the attributes the model may not use."""
        if not demographics:
            return {}
        return {key: value for key, value in demographics.items() if self.allows(key)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**values)


def bucket_label(value: float, edges: Sequence[float]) -> str:
    """`<1`, `1-2`, …, `>=20` for edges (1, 2, …, 20)."""
    position = bisect_right(edges, value)
    if position == 0:
        return f"<{edges[0]:g}"
    if position == len(edges):
        return f">={edges[-1]:g}"
    return f"{edges[position - 1]:g}-{edges[position]:g}"


def user_identity_feature(user_id: str) -> str:
    return USER_IDENTITY_PREFIX + user_id


def item_identity_feature(item_id: str) -> str:
    return ITEM_IDENTITY_PREFIX + item_id


def demographic_features(demographics: Mapping[str, Any] | None) -> dict[str, float]:
    """`{"age_group": "25-34"}` → `{"age_group:25-34": 1.0}`; blank or unknown fields are ignored."""
    if not demographics:
        return {}
    named = {}
    for key in DEMOGRAPHIC_FIELDS:
        value = demographics.get(key)
        if isinstance(value, str) and value.strip():
            named[f"{key}:{value.strip()}"] = 1.0
    return named


def segment_key(field: str, value: str) -> str:
    """A popularity segment: `age_group=25-34`."""
    return f"{field}={value}"


def segment_keys(demographics: Mapping[str, Any] | None) -> list[str]:
    """The popularity segments a user with these demographics belongs to."""
    return [segment_key(*name.split(":", 1)) for name in demographic_features(demographics)]


def activity_features(config: FeatureConfig) -> list[str]:
    """One name per activity bucket: `activity:0` (fewer than the first edge) and so on."""
    return [f"activity:{bucket}" for bucket in range(len(config.activity_edges) + 1)]


def query_terms(query: str) -> list[str]:
    """Lower-cased alphanumeric words of two or more characters, stop words dropped, in order."""
    terms = _TERM_RE.findall(query.lower())
    return list(dict.fromkeys(t for t in terms if len(t) > 1 and t not in _STOPWORDS))


def item_side_features(
    category: str | None,
    institution: str | None,
    product: Product | None,
    config: FeatureConfig,
) -> list[str]:
    """Every side feature of an item: category, institution and bucketed characteristics."""
    names = []
    if category:
        names.append(f"category:{category}")
    if institution:
        names.append(f"institution:{institution}")
    if product is None:
        return names
    numeric: Iterable[tuple[str, float | None, Sequence[float]]] = (
        ("interest_rate", product.interest_rate, config.interest_rate_edges),
        ("annual_fee", product.annual_fee, config.annual_fee_edges),
        ("term_months", product.term_months, config.term_months_edges),
        ("min_age", product.min_age, config.min_age_edges),
        ("min_income", product.min_income, config.min_income_edges),
    )
    for name, value, edges in numeric:
        if value is not None and math.isfinite(value):
            names.append(f"{name}:{bucket_label(float(value), edges)}")
    if product.risk_level is not None:
        names.append(f"risk_level:{int(product.risk_level)}")
    return names
