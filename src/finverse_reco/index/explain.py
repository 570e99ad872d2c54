"""Exact splits of the scores the index ranks with into named contributions. Arrays in, arrays out.

LightFM builds a user's vector as `Σ_f x_uf · e_f` over the user's feature row and an item's as
`Σ_g x_ig · e_g` (its bias likewise), so a score `u · v_i + b_i` is linear in the feature
embeddings. Every query this index ranks with is such a sum: a trained user's feature row, a
fold-in's weighted items and demographics, a new customer's demographics. Kept as named parts
(`QueryParts`), the query's score with an item splits exactly into each part's product with the
item's row, and the parts sum to the score the item was ranked by.

What is not a feature's (the blends' history columns, appended after training, or a vector from
an index that does not keep its feature rows) is one part of kind `other`, computed directly, so
a split always adds up. The item bias is a part of its own (`item_bias`): the item's popularity
with everyone, which no user feature explains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from finverse_reco.index.embedding_index import EmbeddingIndex

NO_ROW = -1


class PartKind(StrEnum):
    USER_FEATURE = "user_feature"  # row into user_feature_names
    ITEM = "item"  # an interacted item's vector, row into items
    UNSEEN_ITEM = "unseen_item"  # an interacted product the model never saw, placed by its
    # features: row into the caller's list of such products
    ITEM_FEATURE = "item_feature"  # row into item_feature_names
    ITEM_BIAS = "item_bias"
    OTHER = "other"  # the blends' columns, or a vector whose features are not known


@dataclass(frozen=True, slots=True)
class QueryParts:
    """A query vector as a sum of named parts: `vectors.sum(axis=0)` is the query."""

    kinds: tuple[PartKind, ...]
    rows: np.ndarray  # (p,) int64: the row each part names (NO_ROW for bias and other)
    vectors: np.ndarray  # (p, d + 1) float32

    @property
    def query(self) -> np.ndarray:
        return self.vectors.sum(axis=0, dtype=np.float32)

    def of_kind(self, *kinds: PartKind) -> np.ndarray:
        """The positions of the parts of these kinds."""
        return np.array([i for i, k in enumerate(self.kinds) if k in kinds], dtype=np.int64)


def contributions(parts: QueryParts, item_rows: np.ndarray) -> np.ndarray:
    """(k, p): each part's contribution to each item's score (`item_rows` are `item_matrix`
    rows); row i sums to `parts.query · item_rows[i]`, the score the item was ranked by."""
    return item_rows @ parts.vectors.T


def trained_user_parts(index: EmbeddingIndex, user_row: int) -> QueryParts:
    """A trained user's query `[u | 1]` as its feature parts `x_uf · e_f`, the rest of `u` (the
    blends' history columns; all of `u` when the feature rows are not known) and the item bias."""
    features, weights = index.user_feature_row(user_row)
    feature_vectors = weights[:, None] * index.user_feature_embeddings[features]
    rest = index.user_vectors[user_row] - feature_vectors.sum(axis=0, dtype=np.float32)
    return query_parts(
        index,
        [(PartKind.USER_FEATURE, features, feature_vectors), (PartKind.OTHER, [NO_ROW], rest)],
    )


def feature_parts(index: EmbeddingIndex, features: Mapping[str, float]) -> QueryParts | None:
    """A customer known only by features (`age_group:25-34` → weight): each known feature's
    share of the row (weights normalised to sum 1, as training's rows are) times its embedding,
    and the item bias. None when no name is known."""
    rows, weights = known_rows(index.user_feature_names, features)
    if not len(rows):
        return None
    vectors = (weights / weights.sum())[:, None] * index.user_feature_embeddings[rows]
    return query_parts(index, [(PartKind.USER_FEATURE, rows, vectors)])


@dataclass(frozen=True, slots=True)
class ItemSplit:
    """Per item, the contributions of its own features to a score computed with its vector:
    item i's features are `features[indptr[i]:indptr[i + 1]]`, worth `values[...]`, and `rest[i]`
    is the part of its vector no feature explains (the blends' columns). Each item's values and
    rest sum to its score."""

    indptr: np.ndarray  # (k + 1,) int64
    features: np.ndarray  # (nnz,) int32 rows into item_feature_names
    values: np.ndarray  # (nnz,) float32
    rest: np.ndarray  # (k,) float32

    def of(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[position], self.indptr[position + 1]
        return self.features[start:end], self.values[start:end]


def cosine_split(index: EmbeddingIndex, anchor: np.ndarray, item_rows: np.ndarray) -> ItemSplit:
    """The cosines of `anchor` (a (d,) or (d + 1,) item-like vector; the bias is ignored) with
    the items' vectors, split over each item's feature row: `cos = Σ_g x_ig (â · e_g) / |v_i|`
    plus the rest of `v_i`. The similar-products ranking is exactly these cosines."""
    dim = index.dim
    unit_anchor = _unit(anchor[:dim])
    inverse_norms = index.inverse_item_norms[item_rows]
    starts = index.item_feature_indptr[item_rows]
    counts = index.item_feature_indptr[item_rows + 1] - starts
    indptr = np.zeros(len(item_rows) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    positions = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1])
    features = index.item_feature_indices[positions]
    owner = np.repeat(np.arange(len(item_rows)), counts)
    feature_vectors = (
        index.item_feature_weights[positions, None] * (index.item_feature_embeddings[features])
    )
    values = (feature_vectors @ unit_anchor) * inverse_norms[owner]
    explained = np.zeros((len(item_rows), dim), np.float32)
    np.add.at(explained, owner, feature_vectors)
    rest = ((index.item_matrix[item_rows, :dim] - explained) @ unit_anchor) * inverse_norms
    return ItemSplit(indptr, features, values.astype(np.float32), rest.astype(np.float32))


def shared_feature_split(
    index: EmbeddingIndex, anchor: np.ndarray, anchor_features: np.ndarray, item_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The terms of `cosine_split` for the features each item shares with the anchor (its
    `anchor_features` rows), without the rest: (position of the item in `item_rows`, feature
    row, contribution to the cosine), item by item. What a similar product's reason needs."""
    unit_anchor = _unit(anchor[: index.dim])
    shared = np.sort(anchor_features)  # a feature row names each feature once
    if not len(shared) or not len(item_rows):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    toward_anchor = index.item_feature_embeddings[shared] @ unit_anchor  # (â · e_g) per feature
    starts = index.item_feature_indptr[item_rows]
    counts = index.item_feature_indptr[item_rows + 1] - starts
    ends = np.cumsum(counts)
    positions = np.repeat(starts - (ends - counts), counts) + np.arange(
        ends[-1] if len(ends) else 0
    )
    features = index.item_feature_indices[positions]
    at = np.minimum(np.searchsorted(shared, features), len(shared) - 1)
    both = shared[at] == features
    owner = np.repeat(np.arange(len(item_rows)), counts)[both]
    values = (
        index.item_feature_weights[positions[both]]
        * toward_anchor[at[both]]
        * index.inverse_item_norms[item_rows[owner]]
    )
    return owner, features[both].astype(np.int64), values.astype(np.float32)


def known_rows(names, features: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, weights) of the named features an IdMap knows, with positive weights."""
    rows, weights = [], []
    for name, weight in features.items():
        row = names.row(name)
        if row is not None and weight > 0:
            rows.append(row)
            weights.append(weight)
    return np.asarray(rows, np.int64), np.asarray(weights, np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = vector.astype(np.float32)
    length = math.sqrt(float(vector @ vector))
    return vector / np.float32(length) if length > 0 else vector


def query_parts(
    index: EmbeddingIndex, blocks: Sequence[tuple[PartKind, ArrayLike, np.ndarray]]
) -> QueryParts:
    """Blocks of (kind, rows, (n, d) vectors), each vector padded with a 0 bias column, then the
    item-bias part `[0 | 1]` that every query ends with."""
    kinds: list[PartKind] = []
    rows: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    for kind, block_rows, block_vectors in blocks:
        block_vectors = np.atleast_2d(block_vectors)
        kinds.extend([kind] * len(block_vectors))
        rows.append(np.asarray(block_rows, np.int64))
        vectors.append(block_vectors)
    kinds.append(PartKind.ITEM_BIAS)
    rows.append(np.array([NO_ROW], np.int64))
    out = np.zeros((len(kinds), index.dim + 1), np.float32)
    if vectors:
        out[:-1, : index.dim] = np.vstack(vectors)
    out[-1, index.dim] = 1.0
    return QueryParts(tuple(kinds), np.concatenate(rows), out)
