"""Fold-in: query vectors for whom training never saw, built from the trained arrays, no retraining.

A session or an unseen user is placed by the items they touched and/or the user features they have
(demographics); a product unseen in training is placed by its item features. Every query vector is
(d + 1,) with a trailing 1 that picks up the item bias, ready for `EmbeddingIndex.rank`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from finverse_reco.index.explain import (
    PartKind,
    QueryParts,
    feature_parts,
    known_rows,
    query_parts,
)
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
    nothing usable is known. The sum of `fold_in_parts`."""
    parts = fold_in_parts(index, item_weights, extra_features, features_share=features_share)
    return None if parts is None else parts.query


def fold_in_parts(
    index: EmbeddingIndex,
    item_weights: Mapping[int, float],
    extra_features: Mapping[str, float] | None = None,
    *,
    unseen_items: tuple[np.ndarray, np.ndarray] | None = None,
    features_share: float = 0.25,
) -> QueryParts | None:
    """`fold_in`'s query as one part per item and per feature (see `explain.py`).
    `unseen_items` are products the model never saw that were touched too: their
    `item_row_from_features` rows (m, d + 1) and weights (m,); they count as items.

    Why the weighted mean of item vectors: a score is `u · v_i`, and WARP moves a user's vector
    towards the vectors of the items they interact with (its gradient for a positive item is
    `v_pos − v_neg`), so a trained user sits near the weighted direction of their items. The item
    vectors are unit-normalised first (a popular item's long vector should not drown the rest) and
    the mean is scaled to the median training user's length, so the item-bias column weighs in as
    much as it does for real users. The feature part is scaled to that length too before mixing,
    so `features_share` is a share of direction, not of magnitude."""
    if not 0.0 <= features_share <= 1.0:
        raise ValueError("features_share must be in [0, 1]")
    dim = index.dim
    rows, weights = [], []
    for row, weight in item_weights.items():
        if 0 <= row < index.n_items and weight > 0 and index.inverse_item_norms[row] > 0:
            rows.append(row)
            weights.append(weight)
    at = np.asarray(rows, dtype=np.int64)
    item_blocks = [
        (PartKind.ITEM, at, np.asarray(weights, np.float32), index.item_matrix[at, :dim])
    ]
    if unseen_items is not None:
        vectors, unseen_weights = unseen_items
        item_blocks.append(
            (PartKind.UNSEEN_ITEM, np.arange(len(vectors)), unseen_weights, vectors[:, :dim])
        )
    blocks = []  # each item's unit vector, weighted
    for kind, block_rows, block_weights, vectors in item_blocks:
        lengths = np.linalg.norm(vectors, axis=1)
        usable = (lengths > 0) & (block_weights > 0)
        unit = vectors[usable] / lengths[usable, None]
        blocks.append((kind, block_rows[usable], block_weights[usable, None] * unit))
    scale = _typical_length_scale(index, sum(vectors.sum(axis=0) for _, _, vectors in blocks))
    if scale is None:  # nothing touched, or the vectors cancel out
        blocks = []
    blocks = [(kind, rows, vectors * scale) for kind, rows, vectors in blocks if len(rows)]
    features = None
    if extra_features:
        feature_rows, feature_weights = known_rows(index.user_feature_names, extra_features)
        if len(feature_rows):
            feature_vectors = (feature_weights / feature_weights.sum())[:, None] * (
                index.user_feature_embeddings[feature_rows]
            )
            features = (PartKind.USER_FEATURE, feature_rows, feature_vectors)
    if features is None:
        return query_parts(index, blocks) if blocks else None
    if not blocks:
        return query_parts(index, [features])
    feature_scale = _typical_length_scale(index, features[2].sum(axis=0))
    if feature_scale is None:
        return query_parts(index, blocks)
    share = np.float32(features_share)
    mixed = [(kind, rows, (1 - share) * vectors) for kind, rows, vectors in blocks]
    mixed.append((features[0], features[1], share * feature_scale * features[2]))
    return query_parts(index, mixed)


def user_query_from_features(
    index: EmbeddingIndex, features: Mapping[str, float]
) -> np.ndarray | None:
    """A user described only by features, exactly as training represents a user without an
    identity feature: the row normalised to sum 1, times the feature embeddings. Unknown names are
    ignored; None when no name is known. The sum of `explain.feature_parts`."""
    parts = feature_parts(index, features)
    return None if parts is None else parts.query


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


def item_feature_rows(index: EmbeddingIndex, product: Product) -> np.ndarray:
    """The rows of the product's side features that the model knows (`item_feature_names`)."""
    names = item_side_features(product.category, product.institution, product, index.feature_config)
    return known_rows(index.item_feature_names, dict.fromkeys(names, 1.0))[0]


def _typical_length_scale(index: EmbeddingIndex, vector: np.ndarray) -> np.float32 | None:
    """The factor that brings `vector` to the median training user's length; None for zero."""
    length = float(np.linalg.norm(vector))
    return np.float32(index.typical_user_norm / length) if length > 0 else None


def _weighted_rows(
    features: Mapping[str, float], names: IdMap, embeddings: np.ndarray, biases: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Σ w·embedding and Σ w·bias over known features, weights normalised to sum 1."""
    rows, weights = known_rows(names, features)
    if not len(rows):
        return None
    weights /= weights.sum()
    return weights @ embeddings[rows], float(weights @ biases[rows])
