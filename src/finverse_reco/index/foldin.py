"""Fold-in: query vectors for whom training never saw, built from the trained arrays, no retraining.

A session or an unseen user is placed by the items they touched and/or the user features they have
(demographics); a product unseen in training is placed by its item features. Every query vector is
(d + 1,) with a trailing 1 that picks up the item bias, ready for `EmbeddingIndex.rank`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from finverse_reco.pipeline.features import item_side_features
from finverse_reco.pipeline.idmap import IdMap
from finverse_reco.products import Product

if TYPE_CHECKING:
    from finverse_reco.index.embedding_index import EmbeddingIndex


def fold_in(
    index: EmbeddingIndex,
    item_weights: Mapping[int, float],
    extra_features: Mapping[str, float] | None = None,
    *,
    features_share: float = 0.25,
) -> np.ndarray | None:
    """A query for a session or an unseen user from the items they touched (row → weight),
    optionally mixed with user features (demographics) for `features_share` of it; None when
    nothing usable is known.

    Why the weighted mean of item vectors: a score is `u · v_i`, and WARP moves a user's vector
    towards the vectors of the items they interact with (its gradient for a positive item is
    `v_pos − v_neg`), so a trained user sits near the weighted direction of their items. The item
    vectors are unit-normalised first (a popular item's long vector should not drown the rest) and
    the mean is scaled to the median training user's length, so the item-bias column weighs in as
    much as it does for real users. The feature part is scaled to that length too before mixing,
    so `features_share` is a share of direction, not of magnitude."""
    if not 0.0 <= features_share <= 1.0:
        raise ValueError("features_share must be in [0, 1]")
    rows, weights = [], []
    for row, weight in item_weights.items():
        if 0 <= row < index.n_items and weight > 0 and index.inverse_item_norms[row] > 0:
            rows.append(row)
            weights.append(weight)
    from_items = None
    if rows:
        at = np.asarray(rows, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float32) * index.inverse_item_norms[at]
        from_items = _at_typical_length(index, w @ index.item_matrix[at, : index.dim])
    mixed = (
        _weighted_rows(extra_features, index.user_feature_names, index.user_feature_embeddings)
        if extra_features
        else None
    )
    if mixed is None:
        return None if from_items is None else _with_one(from_items)
    if from_items is None:
        return _with_one(mixed[0])
    from_features = _at_typical_length(index, mixed[0])
    if from_features is None:
        return _with_one(from_items)
    return _with_one((1.0 - features_share) * from_items + features_share * from_features)


def user_query_from_features(
    index: EmbeddingIndex, features: Mapping[str, float]
) -> np.ndarray | None:
    """A user described only by features, exactly as training represents a user without an
    identity feature: the row normalised to sum 1, times the feature embeddings. Unknown names are
    ignored; None when no name is known."""
    mixed = _weighted_rows(features, index.user_feature_names, index.user_feature_embeddings)
    return None if mixed is None else _with_one(mixed[0])


def item_row_from_features(index: EmbeddingIndex, product: Product) -> np.ndarray:
    """The `item_matrix` row a product unseen in training would have: (d,) vector then bias, from
    its category, institution and characteristics. All zeros when none is known."""
    names = item_side_features(product.category, product.institution, product, index.feature_config)
    mixed = _weighted_rows(
        dict.fromkeys(names, 1.0),
        index.item_feature_names,
        index.item_feature_embeddings,
        index.item_feature_biases,
    )
    row = np.zeros(index.dim + 1, dtype=np.float32)
    if mixed is not None:
        row[: index.dim], row[index.dim] = mixed
    return row


def _at_typical_length(index: EmbeddingIndex, vector: np.ndarray) -> np.ndarray | None:
    length = float(np.linalg.norm(vector))
    return vector * np.float32(index.typical_user_norm / length) if length > 0 else None


def _with_one(vector: np.ndarray) -> np.ndarray:
    out = np.empty(vector.shape[0] + 1, dtype=np.float32)
    out[:-1] = vector
    out[-1] = 1.0
    return out


def _weighted_rows(
    features: Mapping[str, float],
    names: IdMap,
    embeddings: np.ndarray,
    biases: np.ndarray | None = None,
) -> tuple[np.ndarray, float] | None:
    """Σ w·embedding (and Σ w·bias) over known features, weights normalised to sum 1."""
    rows, weights = [], []
    for name, weight in features.items():
        row = names.row(name)
        if row is not None and weight > 0:
            rows.append(row)
            weights.append(weight)
    if not rows:
        return None
    w = np.asarray(weights, dtype=np.float32)
    w /= w.sum()
    vector = w @ embeddings[rows]
    bias = float(w @ biases[rows]) if biases is not None else 0.0
    return vector, bias
