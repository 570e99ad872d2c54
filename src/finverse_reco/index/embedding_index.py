"""The serving structure: precomputed float32 embeddings, top-k, filters, fold-in. Immutable.

LightFM scores a (user, item) pair as `user_vec · item_vec + item_bias (+ user_bias)`; the user bias
shifts every item equally, so ranking needs only `[item_vec | item_bias] · [user_vec | 1]`: one
matrix–vector product over `item_matrix`, then `argpartition` for the top k and a sort of those k.
A request allocates the score vector and the top-k bookkeeping, nothing per item beyond that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from finverse_reco.pipeline.features import (
    FeatureConfig,
    demographic_features,
    item_side_features,
    segment_keys,
)
from finverse_reco.products import Product

# The id and name lists (JSON in an artifact); every other array field is numeric (`.npz`).
MAPPING_FIELDS = (
    "user_ids",
    "item_ids",
    "user_feature_names",
    "item_feature_names",
    "category_names",
    "institution_names",
    "segment_keys",
)
# A segment list nudged by this much of global popularity: ties (zeros) break by overall appeal.
_GLOBAL_TIE_BREAK = 1e-3
# Top-k by a sampled threshold (see `_top_rows`) from this many scores; below, argpartition alone.
_PREFILTER_MIN_ROWS = 4_096
_PREFILTER_STRIDE = 16


@dataclass(frozen=True, eq=False)
class EmbeddingIndex:
    """Everything a request needs to rank items, as read-only arrays. Rows follow the id tuples."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    user_vectors: np.ndarray  # (n_users, d)
    item_matrix: np.ndarray  # (n_items, d + 1): item vector, then item bias
    user_feature_names: tuple[str, ...]
    user_feature_embeddings: np.ndarray  # (n_user_features, d)
    user_feature_biases: np.ndarray  # (n_user_features,)
    item_feature_names: tuple[str, ...]
    item_feature_embeddings: np.ndarray  # (n_item_features, d)
    item_feature_biases: np.ndarray  # (n_item_features,)
    item_categories: np.ndarray  # (n_items,) int32 code into category_names, -1 unknown
    category_names: tuple[str, ...]
    item_institutions: np.ndarray  # (n_items,) int32 code into institution_names, -1 unknown
    institution_names: tuple[str, ...]
    popularity: np.ndarray  # (n_items,) decayed interaction weight
    segment_keys: tuple[str, ...]
    segment_popularity: np.ndarray  # (n_segments, n_items)
    seen_indptr: np.ndarray  # CSR of each user's training items: (n_users + 1,) int64
    seen_indices: np.ndarray  # int32 item rows
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)  # data window, counts, reference time
    version: str = ""

    # Derived once at construction.
    user_index: Mapping[str, int] = field(init=False, repr=False)
    item_index: Mapping[str, int] = field(init=False, repr=False)
    user_feature_index: Mapping[str, int] = field(init=False, repr=False)
    item_feature_index: Mapping[str, int] = field(init=False, repr=False)
    item_norms: np.ndarray = field(init=False, repr=False)
    _item_matrix_t: np.ndarray = field(init=False, repr=False)
    _inverse_item_norms: np.ndarray = field(init=False, repr=False)
    _typical_user_norm: float = field(init=False, repr=False)
    _category_masks: Mapping[str, np.ndarray] = field(init=False, repr=False)
    _rows_by_mask: Mapping[int, np.ndarray] = field(init=False, repr=False)
    _segment_rows: Mapping[str, int] = field(init=False, repr=False)
    _segment_scale: np.ndarray = field(init=False, repr=False)
    _interacted_rows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name, dtype in _ARRAY_DTYPES.items():
            set_(self, name, _read_only(getattr(self, name), dtype))
        for name in MAPPING_FIELDS:
            set_(self, name, tuple(getattr(self, name)))
        for name in ("params", "metrics", "training"):
            set_(self, name, MappingProxyType(dict(getattr(self, name))))
        self._check_shapes()

        set_(self, "user_index", _positions(self.user_ids))
        set_(self, "item_index", _positions(self.item_ids))
        set_(self, "user_feature_index", _positions(self.user_feature_names))
        set_(self, "item_feature_index", _positions(self.item_feature_names))

        # Scoring reads the whole matrix per request; OpenBLAS's gemv over the (d + 1, n_items)
        # transpose is ~1.5x faster than over (n_items, d + 1) rows of 51 (bench/serving.py).
        set_(self, "_item_matrix_t", _read_only(self.item_matrix.T, np.float32))
        norms = np.linalg.norm(self.item_matrix[:, : self.dim], axis=1).astype(np.float32)
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        set_(self, "item_norms", _read_only(norms, np.float32))
        set_(self, "_inverse_item_norms", _read_only(inverse, np.float32))
        user_norms = np.linalg.norm(self.user_vectors, axis=1)
        user_norms = user_norms[user_norms > 0]
        set_(self, "_typical_user_norm", float(np.median(user_norms)) if len(user_norms) else 1.0)

        masks: dict[str, np.ndarray] = {}
        for code, name in enumerate(self.category_names):
            key = name.casefold()  # "Loans" and "loans" are one filter
            masks[key] = masks.get(key, False) | (self.item_categories == code)
        masks = {key: _read_only(mask, np.bool_) for key, mask in masks.items()}
        set_(self, "_category_masks", MappingProxyType(masks))
        rows = {id(mask): _read_only(np.flatnonzero(mask), np.int64) for mask in masks.values()}
        set_(self, "_rows_by_mask", MappingProxyType(rows))

        set_(self, "_interacted_rows", _read_only(np.flatnonzero(self.popularity > 0), np.int64))
        set_(self, "_segment_rows", _positions(self.segment_keys))
        totals = self.segment_popularity.sum(axis=1)
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        set_(self, "_segment_scale", _read_only(scale, np.float32))

    # --- shape ------------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.user_vectors.shape[1]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def with_version(self, version: str) -> EmbeddingIndex:
        return replace(self, version=version)

    # --- lookups ----------------------------------------------------------------------------------

    def user_row(self, user_id: str) -> int | None:
        return self.user_index.get(user_id)

    def item_row(self, item_id: str) -> int | None:
        return self.item_index.get(item_id)

    def item_meta(self, item_row: int) -> tuple[str, str]:
        """(category, institution) of an item; "" where unknown."""
        category = int(self.item_categories[item_row])
        institution = int(self.item_institutions[item_row])
        return (
            self.category_names[category] if category >= 0 else "",
            self.institution_names[institution] if institution >= 0 else "",
        )

    def seen_rows(self, user_row: int) -> np.ndarray:
        """Item rows the user interacted with in the training data."""
        return self.seen_indices[self.seen_indptr[user_row] : self.seen_indptr[user_row + 1]]

    def category_mask(self, category: str) -> np.ndarray | None:
        """Read-only bool mask of the items in a category (case-insensitive); None if unknown."""
        return self._category_masks.get(category.casefold())

    # --- user vectors (all (d + 1,) with a trailing 1 that picks up the item bias) ----------------

    def user_vector(self, user_row: int) -> np.ndarray:
        vector = np.empty(self.dim + 1, dtype=np.float32)
        vector[: self.dim] = self.user_vectors[user_row]
        vector[self.dim] = 1.0
        return vector

    def user_vectors_for(self, user_rows: Sequence[int]) -> np.ndarray:
        """`user_vector` of each row, as one (len(user_rows), d + 1) array: three numpy calls
        for a whole batch rather than three per user."""
        vectors = np.empty((len(user_rows), self.dim + 1), dtype=np.float32)
        np.take(self.user_vectors, user_rows, axis=0, out=vectors[:, : self.dim])
        vectors[:, self.dim] = 1.0
        return vectors

    def user_feature_names_for(self, demographics: Mapping[str, Any]) -> dict[str, float]:
        """Demographics as the user features training used (`age_group:25-34` → 1.0)."""
        return demographic_features(demographics)

    def user_vector_from_features(self, features: Mapping[str, float]) -> np.ndarray | None:
        """A user described only by features, exactly as training represents a user without an
        identity feature: the row normalised to sum 1, times the feature embeddings. Unknown names
        are ignored; None when no name is known."""
        mixed = _weighted_rows(features, self.user_feature_index, self.user_feature_embeddings)
        return None if mixed is None else _with_one(mixed[0])

    def fold_in(
        self,
        item_weights: Mapping[int, float],
        extra_features: Mapping[str, float] | None = None,
        *,
        features_share: float = 0.25,
    ) -> np.ndarray | None:
        """A vector for a session or an unseen user from the items they touched (row → weight),
        optionally mixed with user features (demographics) for `features_share` of it.

        Why the weighted mean of item vectors: a score is `u · v_i`, and WARP moves a user's vector
        towards the vectors of the items they interact with (its gradient for a positive item is
        `v_pos − v_neg`), so a trained user sits near the weighted direction of their items. The
        item vectors are unit-normalised first (a popular item's long vector should not drown the
        rest) and the mean is scaled to the median training user's length, so the item-bias column
        weighs in as much as it does for real users. The feature part is scaled to that length too
        before mixing, so `features_share` is a share of direction, not of magnitude."""
        if not 0.0 <= features_share <= 1.0:
            raise ValueError("features_share must be in [0, 1]")
        rows, weights = [], []
        for row, weight in item_weights.items():
            if 0 <= row < self.n_items and weight > 0 and self._inverse_item_norms[row] > 0:
                rows.append(row)
                weights.append(weight)
        from_items = None
        if rows:
            index = np.asarray(rows, dtype=np.int64)
            w = np.asarray(weights, dtype=np.float32) * self._inverse_item_norms[index]
            from_items = self._at_typical_length(w @ self.item_matrix[index, : self.dim])
        mixed = (
            _weighted_rows(extra_features, self.user_feature_index, self.user_feature_embeddings)
            if extra_features
            else None
        )
        if mixed is None:
            return None if from_items is None else _with_one(from_items)
        if from_items is None:
            return _with_one(mixed[0])
        from_features = self._at_typical_length(mixed[0])
        if from_features is None:
            return _with_one(from_items)
        return _with_one((1.0 - features_share) * from_items + features_share * from_features)

    def _at_typical_length(self, vector: np.ndarray) -> np.ndarray | None:
        length = float(np.linalg.norm(vector))
        return vector * np.float32(self._typical_user_norm / length) if length > 0 else None

    # --- item vectors -----------------------------------------------------------------------------

    def item_vector_from_features(self, product: Product) -> np.ndarray:
        """The `item_matrix` row a product unseen in training would have: (d + 1,) vector then bias,
        from its category, institution and characteristics. All zeros when none is known."""
        names = item_side_features(
            product.category, product.institution, product, self.feature_config
        )
        mixed = _weighted_rows(
            dict.fromkeys(names, 1.0),
            self.item_feature_index,
            self.item_feature_embeddings,
            self.item_feature_biases,
        )
        row = np.zeros(self.dim + 1, dtype=np.float32)
        if mixed is not None:
            row[: self.dim], row[self.dim] = mixed
        return row

    # --- ranking ----------------------------------------------------------------------------------

    def recommend(
        self,
        user_vector: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item rows by `user_vector · item_matrix` (best first) and their scores."""
        if user_vector.shape != (self.dim + 1,):
            raise ValueError(f"user_vector must have shape ({self.dim + 1},)")
        (ranked,) = self.recommend_many(user_vector[None, :], [k], [exclude], [allowed])
        return ranked

    def recommend_many(
        self,
        user_vectors: np.ndarray,
        ks: Sequence[int],
        excludes: Sequence[np.ndarray | None],
        alloweds: Sequence[np.ndarray | None],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`recommend` for several vectors at once ((b, d + 1), one k, exclude and allowed each).

        One matrix product and one top-k pass serve them all: a burst of concurrent requests
        reads the item matrix once, and pays numpy's per-call overhead once, not per request."""
        vectors = np.asarray(user_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim + 1:
            raise ValueError(f"user_vectors must have shape (b, {self.dim + 1})")
        if not len(vectors) == len(ks) == len(excludes) == len(alloweds):
            raise ValueError("one k, exclude and allowed per user vector")
        scores = vectors @ self._item_matrix_t
        ranked: list[tuple[np.ndarray, np.ndarray]] = [(_NO_ROWS, _NO_SCORES)] * len(vectors)
        unfiltered = [b for b, allowed in enumerate(alloweds) if allowed is None]
        for b, allowed in enumerate(alloweds):
            if allowed is not None:
                ranked[b] = self._top_k(scores[b], ks[b], excludes[b], allowed)
        if unfiltered:
            block = scores if len(unfiltered) == len(vectors) else scores[unfiltered]
            tops = _top_k_rows(
                block, [ks[b] for b in unfiltered], [excludes[b] for b in unfiltered]
            )
            for b, top in zip(unfiltered, tops, strict=True):
                ranked[b] = top
        return ranked

    def similar_items(
        self, item_row: int, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by cosine of item vectors; never the item itself."""
        return self.similar_to_vector(
            self.item_matrix[item_row], k, exclude=np.array([item_row]), allowed=allowed
        )

    def similar_to_vector(
        self,
        vector: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by cosine to an item vector ((d,) or an `item_matrix`-like (d + 1,) row)."""
        if vector.shape not in {(self.dim,), (self.dim + 1,)}:
            raise ValueError(f"vector must have shape ({self.dim},) or ({self.dim + 1},)")
        query = vector[: self.dim].astype(np.float32, copy=False)
        length = float(np.linalg.norm(query))
        if length == 0:
            return _NO_ROWS, _NO_SCORES
        scores = query @ self._item_matrix_t[: self.dim]
        scores *= self._inverse_item_norms
        scores *= np.float32(1.0 / length)
        return self._top_k(scores, k, exclude, allowed)

    def popular(
        self,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most popular items; with `segment` (demographics), popular among users of those
        demographic values (their shares averaged), else among everyone. Items nobody touched
        (popularity 0) fill the list in row order only when fewer than k others qualify."""
        # Only items with interactions are ranked: the rest all tie at 0 (and ties slow
        # argpartition down), so they are appended afterwards if needed.
        candidates = self._interacted_rows
        if allowed is not None:
            candidates = candidates[self._check_mask(allowed)[candidates]]
        segments = [
            self._segment_rows[key] for key in segment_keys(segment) if key in self._segment_rows
        ]
        segments = [row for row in segments if self._segment_scale[row] > 0]
        if segments:
            total = float(self.popularity.sum())
            scores = self.popularity[candidates] * np.float32(_GLOBAL_TIE_BREAK / total)
            for row in segments:
                share = self._segment_scale[row] / len(segments)
                scores += self.segment_popularity[row, candidates] * share
        else:
            scores = self.popularity[candidates]
        rows, top = self._rank(scores, candidates, k, exclude)
        if len(rows) >= k:
            return rows, top
        filler = self.popularity == 0
        if allowed is not None:
            filler &= allowed
        if exclude is not None and len(exclude):
            filler[np.asarray(exclude, dtype=np.int64)] = False
        extra = np.flatnonzero(filler)[: k - len(rows)]
        return np.concatenate([rows, extra]), np.concatenate(
            [top, np.zeros(len(extra), np.float32)]
        )

    def _top_k(
        self,
        scores: np.ndarray,
        k: int,
        exclude: np.ndarray | None,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best k of `scores` (one per item; this call owns it and may overwrite it).

        With `allowed`, only the allowed rows are ranked (gathered, not masked with -inf:
        `argpartition` slows down tenfold on a vector that is mostly one repeated value)."""
        if allowed is None:
            return self._rank(scores, None, k, exclude)
        self._check_mask(allowed)
        # One of our category masks (alive, so its id is its own) has its rows precomputed.
        candidates = self._rows_by_mask.get(id(allowed))
        if candidates is None:
            candidates = np.flatnonzero(allowed)
        return self._rank(scores[candidates], candidates, k, exclude)

    @staticmethod
    def _rank(
        scores: np.ndarray,
        candidates: np.ndarray | None,
        k: int,
        exclude: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top k of `scores` (for `candidates` rows, sorted; None: every row), best first.

        Few numpy calls on purpose: on a small catalog each costs more than its arithmetic, and
        several times more in a busy server than in a loop (cold caches)."""
        if exclude is not None and len(exclude):
            if candidates is None:
                scores[exclude] = -np.inf
            elif len(candidates):
                exclude = np.asarray(exclude, dtype=np.int64)
                positions = np.minimum(np.searchsorted(candidates, exclude), len(candidates) - 1)
                scores[positions[candidates[positions] == exclude]] = -np.inf
        n = scores.shape[0]
        k = min(int(k), n)
        if k <= 0:
            return _NO_ROWS, _NO_SCORES
        rows = _top_rows(scores, k) if k < n else np.arange(n)
        top = scores[rows]
        order = np.argsort(-top, kind="stable")
        rows, top = rows[order], top[order]
        if top[-1] == -np.inf:  # fewer than k rows were left after the exclusions
            keep = top > -np.inf
            rows, top = rows[keep], top[keep]
        return (candidates[rows] if candidates is not None else rows), top

    def _check_mask(self, allowed: np.ndarray) -> np.ndarray:
        if allowed.shape != (self.n_items,) or allowed.dtype != np.bool_:
            raise ValueError(f"allowed must be a bool mask of shape ({self.n_items},)")
        return allowed

    def _check_shapes(self) -> None:
        n_users, n_items, dim = self.n_users, self.n_items, self.user_vectors.shape[-1]
        expected = {
            "user_vectors": (n_users, dim),
            "item_matrix": (n_items, dim + 1),
            "user_feature_embeddings": (len(self.user_feature_names), dim),
            "user_feature_biases": (len(self.user_feature_names),),
            "item_feature_embeddings": (len(self.item_feature_names), dim),
            "item_feature_biases": (len(self.item_feature_names),),
            "item_categories": (n_items,),
            "item_institutions": (n_items,),
            "popularity": (n_items,),
            "segment_popularity": (len(self.segment_keys), n_items),
            "seen_indptr": (n_users + 1,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        for name, names in (
            ("item_categories", self.category_names),
            ("item_institutions", self.institution_names),
        ):
            codes = getattr(self, name)
            if len(codes) and (codes.min() < -1 or codes.max() >= len(names)):
                raise ValueError(f"{name} has codes outside its names")
        indptr, indices = self.seen_indptr, self.seen_indices
        if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
            raise ValueError("seen_indptr is not a CSR row pointer for seen_indices")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
            raise ValueError("seen_indices has rows outside the items")


_ARRAY_DTYPES: dict[str, type] = {
    "user_vectors": np.float32,
    "item_matrix": np.float32,
    "user_feature_embeddings": np.float32,
    "user_feature_biases": np.float32,
    "item_feature_embeddings": np.float32,
    "item_feature_biases": np.float32,
    "item_categories": np.int32,
    "item_institutions": np.int32,
    "popularity": np.float32,
    "segment_popularity": np.float32,
    "seen_indptr": np.int64,
    "seen_indices": np.int32,
}
ARRAY_FIELDS = tuple(_ARRAY_DTYPES)

_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_SCORES = np.zeros(0, dtype=np.float32)
_NO_ROWS.flags.writeable = False
_NO_SCORES.flags.writeable = False


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k largest scores, unordered (0 < k < len(scores))."""
    return _top_columns(scores[None, :], k)[0]


def _top_columns(block: np.ndarray, k: int) -> np.ndarray:
    """(b, k) columns of each row's k largest scores, unordered (0 < k < block.shape[1]).

    On long rows a threshold from a strided sample (its (k+1)-th largest value) leaves a few
    hundred candidates per row, found in one vectorised comparison; `argpartition` then runs on
    those alone. Exact: when at least k scores of a row beat its threshold, its top k are among
    them; otherwise (rare: many ties or excluded rows) that row is partitioned whole. Row by row
    on purpose: numpy's 2-D `nonzero` is several times slower than a `flatnonzero` per row."""
    n = block.shape[1]
    if n < _PREFILTER_MIN_ROWS or (k + 1) * _PREFILTER_STRIDE * 4 > n:
        return np.argpartition(block, n - k, axis=1)[:, n - k :]
    m = (n + _PREFILTER_STRIDE - 1) // _PREFILTER_STRIDE
    thresholds = np.partition(block[:, ::_PREFILTER_STRIDE], m - k - 1, axis=1)[:, m - k - 1]
    top = np.empty((len(block), k), dtype=np.int64)
    for line, threshold in enumerate(thresholds.tolist()):
        scores = block[line]
        candidates = np.flatnonzero(scores > threshold)
        if len(candidates) < k:
            top[line] = np.argpartition(scores, n - k)[n - k :]
            continue
        best = np.argpartition(scores[candidates], len(candidates) - k)[len(candidates) - k :]
        top[line] = candidates[best]
    return top


def _top_k_rows(
    block: np.ndarray, ks: Sequence[int], excludes: Sequence[np.ndarray | None]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each row's best `ks[i]` columns (best first) and scores, `excludes[i]` left out.

    `block` (b, n) is this call's to overwrite. Few numpy calls per batch on purpose: on a small
    catalog each costs more than its arithmetic, and more in a busy server than in a loop."""
    n = block.shape[1]
    excluded = [
        (line, rows) for line, rows in enumerate(excludes) if rows is not None and len(rows)
    ]
    if len(excluded) == 1:
        block[excluded[0]] = -np.inf
    elif excluded:  # one scatter for the batch
        lines, rows = zip(*excluded, strict=True)
        block[np.repeat(lines, [len(r) for r in rows]), np.concatenate(rows)] = -np.inf
    k = min(max(ks), n)
    if k <= 0:
        return [(_NO_ROWS, _NO_SCORES)] * len(block)
    lines = np.arange(len(block))[:, None]
    columns = _top_columns(block, k) if k < n else np.broadcast_to(np.arange(n), block.shape)
    top = block[lines, columns]
    order = np.argsort(-top, axis=1, kind="stable")
    columns, top = columns[lines, order], top[lines, order]
    ranked = []
    for line, wanted in enumerate(ks):
        wanted = max(0, min(wanted, k))
        rows, scores = columns[line, :wanted], top[line, :wanted]
        if wanted and scores[-1] == -np.inf:  # fewer than k left after the exclusions
            keep = scores > -np.inf
            rows, scores = rows[keep], scores[keep]
        ranked.append((rows, scores))
    return ranked


def _read_only(array: Any, dtype: type) -> np.ndarray:
    view = np.ascontiguousarray(array, dtype=dtype).view()
    view.flags.writeable = False
    return view


def _positions(names: Sequence[str]) -> Mapping[str, int]:
    positions = {name: row for row, name in enumerate(names)}
    if len(positions) != len(names):
        raise ValueError("ids and feature names must be unique")
    return MappingProxyType(positions)


def _with_one(vector: np.ndarray) -> np.ndarray:
    out = np.empty(vector.shape[0] + 1, dtype=np.float32)
    out[:-1] = vector
    out[-1] = 1.0
    return out


def _weighted_rows(
    features: Mapping[str, float],
    index: Mapping[str, int],
    embeddings: np.ndarray,
    biases: np.ndarray | None = None,
) -> tuple[np.ndarray, float] | None:
    """Σ w·embedding (and Σ w·bias) over known features, weights normalised to sum 1."""
    rows, weights = [], []
    for name, weight in features.items():
        row = index.get(name)
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
