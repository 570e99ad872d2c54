"""How much one interaction says about what a user wants.

weight = base weight of the event type
         × view factor (views only: saturating in viewDuration)
         ÷ number of products the event touches (a comparison spreads its weight)
         × 0.5 ** (age / half-life)

The view factor is `max(min_view_factor, 1 - exp(-duration / view_saturation_seconds))`: the first
seconds of attention say the most, a long read is not worth much more than a careful one, and a
0-second view still counts a little. A view without a duration gets `missing_duration_factor`
(default 1.0, neutral): producers that do not measure duration should not see their views shrink.
Events newer than the reference time are not boosted (their age counts as 0).

`event_weight` (one document) and `event_weights` (arrays, used by training) share one formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np

from finverse_reco.events import DEFAULT_TYPE_WEIGHTS

SECONDS_PER_DAY = 86_400.0
VIEW_TYPE = "product_view"
SEARCH_TYPE = "search"


@dataclass(frozen=True)
class WeightingConfig:
    type_weights: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_TYPE_WEIGHTS))
    )
    view_saturation_seconds: float = 30.0
    decay_half_life_days: float = 90.0
    min_view_factor: float = 0.1
    missing_duration_factor: float = 1.0

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.type_weights.values()):
            raise ValueError("type_weights must be >= 0")
        if self.view_saturation_seconds <= 0:
            raise ValueError("view_saturation_seconds must be > 0")
        if self.decay_half_life_days <= 0:
            raise ValueError("decay_half_life_days must be > 0")
        if not 0 <= self.min_view_factor <= 1 or self.missing_duration_factor < 0:
            raise ValueError("min_view_factor must be in [0, 1], missing_duration_factor >= 0")
        # A plain dict passed in stays shared with the caller; freeze our own copy.
        object.__setattr__(self, "type_weights", MappingProxyType(dict(self.type_weights)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type_weights": dict(self.type_weights),
            "view_saturation_seconds": self.view_saturation_seconds,
            "decay_half_life_days": self.decay_half_life_days,
            "min_view_factor": self.min_view_factor,
            "missing_duration_factor": self.missing_duration_factor,
        }


def event_weights(
    base: np.ndarray,
    is_view: np.ndarray,
    duration: np.ndarray,
    spread: np.ndarray,
    age_seconds: np.ndarray,
    config: WeightingConfig,
) -> np.ndarray:
    """Vectorised weights (float64). `duration` is NaN where unknown; `spread` >= 1."""
    factor = np.where(
        np.isnan(duration),
        config.missing_duration_factor,
        np.maximum(
            config.min_view_factor,
            -np.expm1(-np.nan_to_num(duration) / config.view_saturation_seconds),
        ),
    )
    factor = np.where(is_view, factor, 1.0)
    return base * factor / spread * decay_factor(age_seconds, config.decay_half_life_days)


def decay_factor(age_seconds: np.ndarray, half_life_days: float) -> np.ndarray:
    """0.5 per half-life of age; no boost for events newer than the reference time."""
    return np.exp2(-np.maximum(age_seconds, 0.0) / (half_life_days * SECONDS_PER_DAY))


def event_weight(
    doc: Mapping[str, Any], config: WeightingConfig, now: datetime
) -> list[tuple[str, float]]:
    """(product_id, weight) for every product one stored document touches; [] when it carries none."""
    return documents_weights([doc], config, now)


def documents_weights(
    docs: Sequence[Mapping[str, Any]], config: WeightingConfig, now: datetime
) -> list[tuple[str, float]]:
    """(product_id, weight) for every product the documents touch, in document order, in one
    vectorised pass: the request path weighs a whole session at once."""
    touched, base, is_view, duration, spread, age = [], [], [], [], [], []
    reference = aware(now)
    for doc in docs:
        event_type = str(doc.get("type"))
        type_weight = config.type_weights.get(event_type, 0.0)
        data = doc.get("data") or {}
        products = touched_products(data)
        if type_weight <= 0 or not products:
            continue
        seconds = data.get("viewDuration")
        touched.append(products)
        base.append(type_weight)
        is_view.append(event_type == VIEW_TYPE)
        duration.append(np.nan if seconds is None else float(seconds))
        spread.append(float(len(products)))
        age.append((reference - aware(doc["timestamp"])).total_seconds())
    if not touched:
        return []
    weights = event_weights(
        np.array(base),
        np.array(is_view),
        np.array(duration),
        np.array(spread),
        np.array(age),
        config,
    ).tolist()
    return [
        (pid, weight) for products, weight in zip(touched, weights, strict=True) for pid in products
    ]


def touched_products(data: Mapping[str, Any]) -> list[str]:
    """productId then productIDs, first-seen order, no duplicates (as `InteractionEvent` does)."""
    first = data.get("productId")
    more = data.get("productIDs")
    if not more:
        return [first] if first else []
    return list(dict.fromkeys([first, *more] if first else more))


def aware(moment: datetime) -> datetime:
    """Stores hand back UTC; a naive datetime is taken as UTC rather than local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
