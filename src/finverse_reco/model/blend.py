"""Blends served as extra dimensions of the one dot product the index ranks with.

The index ranks every request with `[user vector | 1] · [item vector | item bias]`. A blend adds
columns to both sides, so that the product gains exactly the blended term and nothing in serving
changes (`EmbeddingIndex`, batching, fold-in and filters work on the arrays as they are):

- item-item (`ItemItemFactors`, EASE): a trained user gains `c · x_u Q`, every item its `R` row;
  the product gains `c · x_u Q Rᵀ`, the low-rank EASE score of the user's history. A user known
  only by features has no history: zeros there.
- segment prior: every item gains its share of each demographic segment's popularity (one column
  per segment), every user feature naming a segment (`age_group:25-34` → `age_group=25-34`) a
  `c` in that segment's column. A customer known only by demographics is the normalised mix of
  their features, so the product gains `c ×` the mean of their segments' shares: segment
  popularity, the service's own fallback, added to the features' score. Trained users: zeros.

Each `c` is the blend's weight times the spread of LightFM's scores over the spread of the added
term's, measured on a fixed sample of users, so a weight means the same on any data. The item
side of the added columns is scaled down (and the user side up by as much: the product is the
same) to a thousandth of the item vectors' length, so the cosine between items (similar products,
and the item mean a session is folded in from) stays LightFM's. Arrays in, arrays out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Users sampled (fixed seed) to measure the spread of each term.
SCALE_SAMPLE_USERS = 2_000
# The added columns' item side, relative to the median item vector length.
_QUIET_ITEM_SIDE = 1e-3


@dataclass(frozen=True)
class Dimensions:
    """Columns to append: one row per trained user, item, user feature and item feature."""

    users: np.ndarray
    items: np.ndarray
    user_features: np.ndarray
    item_features: np.ndarray

    @classmethod
    def for_users_with_history(
        cls, users: np.ndarray, items: np.ndarray, n_user_features: int, n_item_features: int
    ) -> Dimensions:
        width = items.shape[1]
        return cls(
            users,
            items,
            np.zeros((n_user_features, width), np.float32),
            np.zeros((n_item_features, width), np.float32),
        )

    @classmethod
    def for_user_features(
        cls, user_features: np.ndarray, items: np.ndarray, n_users: int, n_item_features: int
    ) -> Dimensions:
        width = items.shape[1]
        return cls(
            np.zeros((n_users, width), np.float32),
            items,
            user_features,
            np.zeros((n_item_features, width), np.float32),
        )


def spread_ratio(base: np.ndarray, added: np.ndarray) -> float:
    """std(base) / std(added) over the same (user, item) scores; 1.0 when `added` is flat (or
    there is no user to measure on)."""
    spread = float(np.std(added)) if added.size else 0.0
    return float(np.std(base)) / spread if spread > 0 else 1.0


def sample_rows(candidates: np.ndarray, seed: int) -> np.ndarray:
    """At most `SCALE_SAMPLE_USERS` of `candidates`, the same ones for the same seed."""
    if len(candidates) <= SCALE_SAMPLE_USERS:
        return candidates
    chosen = np.random.default_rng(seed).choice(candidates, SCALE_SAMPLE_USERS, replace=False)
    return np.sort(chosen)


def segment_shares(
    segment_popularity: dict[str, np.ndarray], n_items: int
) -> tuple[list[str], np.ndarray]:
    """Segments with any popularity (sorted) and (n_items, n_segments) each one's item shares."""
    keys = sorted(k for k, v in segment_popularity.items() if float(v.sum()) > 0)
    shares = np.zeros((n_items, len(keys)), dtype=np.float32)
    for column, key in enumerate(keys):
        values = segment_popularity[key].astype(np.float64)
        shares[:, column] = values / values.sum()
    return keys, shares


def appended(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    user_feature_embeddings: np.ndarray,
    item_feature_embeddings: np.ndarray,
    blocks: list[Dimensions],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays with every block's columns appended, the item side kept quiet (see the
    module docstring); float32, C-contiguous."""
    items = np.hstack([b.items for b in blocks])
    largest = float(np.abs(items).max()) if items.size else 0.0
    lengths = np.linalg.norm(item_vectors, axis=1)
    typical = float(np.median(lengths[lengths > 0])) if (lengths > 0).any() else 1.0
    quiet = _QUIET_ITEM_SIDE * typical / largest if largest > 0 else 1.0
    return (
        _f32(np.hstack([user_vectors, *(b.users / quiet for b in blocks)])),
        _f32(np.hstack([item_vectors, items * quiet])),
        _f32(np.hstack([user_feature_embeddings, *(b.user_features / quiet for b in blocks)])),
        _f32(np.hstack([item_feature_embeddings, *(b.item_features * quiet for b in blocks)])),
    )


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)
