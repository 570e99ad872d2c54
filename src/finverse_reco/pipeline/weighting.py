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

A dismissal (the customer rejected a product they were shown) is a negative signal. WARP learns
from positives only and samples its negatives from everything else, so the way to tell it "not
this one" is to take the pair out of the positives: every positive event on a product that
happened before the customer dismissed it is multiplied by `dismiss_keep` (default 0: the pair is
no longer a positive, and WARP may sample it as a negative; 1 ignores dismissals). A positive
after the dismissal (the customer changed their mind and applied) counts in full.

`event_weights` (arrays) is the one formula: training reads it over a batch's columns,
`interaction_weights` over the columns of a session or a customer's recent events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np

from finverse_reco.events import DEFAULT_TYPE_WEIGHTS, InteractionColumns

SECONDS_PER_DAY = 86_400.0
VIEW_TYPE = "product_view"
SEARCH_TYPE = "search"
DISMISS_TYPE = "dismiss"


@dataclass(frozen=True)
class WeightingConfig:
    type_weights: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_TYPE_WEIGHTS))
    )
    view_saturation_seconds: float = 30.0
    decay_half_life_days: float = 90.0
    min_view_factor: float = 0.1
    missing_duration_factor: float = 1.0
    dismiss_keep: float = 0.0

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.type_weights.values()):
            raise ValueError("type_weights must be >= 0")
        if self.view_saturation_seconds <= 0:
            raise ValueError("view_saturation_seconds must be > 0")
        if self.decay_half_life_days <= 0:
            raise ValueError("decay_half_life_days must be > 0")
        if not 0 <= self.min_view_factor <= 1 or self.missing_duration_factor < 0:
            raise ValueError("min_view_factor must be in [0, 1], missing_duration_factor >= 0")
        if not 0 <= self.dismiss_keep <= 1:
            raise ValueError("dismiss_keep must be in [0, 1]")
        # A plain dict passed in stays shared with the caller; freeze our own copy.
        object.__setattr__(self, "type_weights", MappingProxyType(dict(self.type_weights)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type_weights": dict(self.type_weights),
            "view_saturation_seconds": self.view_saturation_seconds,
            "decay_half_life_days": self.decay_half_life_days,
            "min_view_factor": self.min_view_factor,
            "missing_duration_factor": self.missing_duration_factor,
            "dismiss_keep": self.dismiss_keep,
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
    # NaN durations pass through expm1 and maximum as NaN, silently, and `where` replaces them;
    # a `nan_to_num` first was a third of the cost of weighing a session on the request path.
    factor = np.where(
        np.isnan(duration),
        config.missing_duration_factor,
        np.maximum(config.min_view_factor, -np.expm1(-duration / config.view_saturation_seconds)),
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
    return interaction_weights(InteractionColumns.from_documents([doc]), config, now)


def interaction_weights(
    columns: InteractionColumns, config: WeightingConfig, now: datetime
) -> list[tuple[str, float]]:
    """(product_id, weight) for every product the interactions touch, in their order, in one
    vectorised pass: the request path weighs a whole session at once, as training weighs a batch."""
    base = np.array([config.type_weights.get(kind, 0.0) for kind in columns.types])
    touched = [columns.touched(row) if base[row] > 0 else [] for row in range(len(columns))]
    rows = [row for row, products in enumerate(touched) if products]
    if not rows:
        return []
    weights = event_weights(
        base[rows],
        np.array([columns.types[row] == VIEW_TYPE for row in rows]),
        columns.view_durations[rows],
        np.array([float(len(touched[row])) for row in rows]),
        aware(now).timestamp() - columns.timestamps[rows],
        config,
    )
    per_pair = np.repeat(weights, [len(touched[row]) for row in rows])
    pairs = [(product, row) for row in rows for product in touched[row]]
    dismissed = _latest_dismissals(columns)
    if dismissed:
        times = columns.timestamps
        before = [times[row] <= dismissed.get(product, -np.inf) for product, row in pairs]
        per_pair = np.where(before, per_pair * config.dismiss_keep, per_pair)
    return [(product, w) for (product, _), w in zip(pairs, per_pair.tolist(), strict=True)]


def _latest_dismissals(columns: InteractionColumns) -> dict[str, float]:
    """Product → time of the customer's latest dismissal of it, within these interactions."""
    latest: dict[str, float] = {}
    for row, kind in enumerate(columns.types):
        product = columns.product_ids[row]
        if kind == DISMISS_TYPE and product:
            latest[product] = max(latest.get(product, -np.inf), float(columns.timestamps[row]))
    return latest


def aware(moment: datetime) -> datetime:
    """Stores hand back UTC; a naive datetime is taken as UTC rather than local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
