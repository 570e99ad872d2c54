"""The serving structure: a trained model's frozen arrays and the id maps that name their rows.

LightFM scores a (user, item) pair as `user_vec · item_vec + item_bias (+ user_bias)`; the user bias
shifts every item equally, so ranking needs only `[item_vec | item_bias] · [user_vec | 1]`. Every
list is ranked by the one kernel in `topk.py`; fold-in (`foldin.py`) and popularity
(`popularity.py`) are small modules over these arrays. Nothing here changes after construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from finverse_reco.index.popularity import Popularity
from finverse_reco.index.relevance import ScoreMoments
from finverse_reco.index.topk import Filters, TopK, topk, topk_of_scores
from finverse_reco.pipeline.features import DEMOGRAPHIC_FIELDS, FeatureConfig
from finverse_reco.pipeline.idmap import IdMap

# How the artifacts name the id maps (plain JSON lists) and the other name lists.
ID_MAP_FIELDS = {
    "user_ids": "users",
    "item_ids": "items",
    "user_feature_names": "user_feature_names",
    "item_feature_names": "item_feature_names",
}
NAME_FIELDS = ("category_names", "institution_names", "segment_keys")


@dataclass(frozen=True, eq=False)
class EmbeddingIndex:
    """Everything a request needs to rank items, as read-only arrays. Rows follow the id maps."""

    users: IdMap
    items: IdMap
    user_vectors: np.ndarray  # (n_users, d)
    item_matrix: np.ndarray  # (n_items, d + 1): item vector, then item bias
    user_feature_names: IdMap
    user_feature_embeddings: np.ndarray  # (n_user_features, d)
    user_feature_biases: np.ndarray  # (n_user_features,)
    item_feature_names: IdMap
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
    # The feature rows LightFM built the representations from, as CSR (rows sum to 1): they split a
    # score into per-feature contributions (`explain.py`). None: not known (an index built without
    # them); a score then splits no finer than the whole user or item vector.
    user_feature_indptr: np.ndarray | None = None  # (n_users + 1,) int64
    user_feature_indices: np.ndarray | None = None  # int32 rows of user_feature_names
    user_feature_weights: np.ndarray | None = None  # float32
    item_feature_indptr: np.ndarray | None = None  # (n_items + 1,) int64
    item_feature_indices: np.ndarray | None = None  # int32 rows of item_feature_names
    item_feature_weights: np.ndarray | None = None  # float32
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)  # data window, counts, reference time
    version: str = ""

    # Derived once at construction.
    inverse_item_norms: np.ndarray = field(init=False, repr=False)
    typical_user_norm: float = field(init=False, repr=False)
    score_moments: ScoreMoments = field(init=False, repr=False)
    demographic_values: Mapping[str, tuple[str, ...]] = field(init=False, repr=False)
    popular_items: Popularity = field(init=False, repr=False)
    _item_matrix_t: np.ndarray = field(init=False, repr=False)
    _unit_items_t: np.ndarray = field(init=False, repr=False)
    _category_masks: Mapping[str, np.ndarray] = field(init=False, repr=False)
    _category_rows: Mapping[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for side, count in (("user", len(self.users)), ("item", len(self.items))):
            if getattr(self, f"{side}_feature_indptr") is None:  # no feature rows known
                set_(self, f"{side}_feature_indptr", np.zeros(count + 1, np.int64))
                set_(self, f"{side}_feature_indices", np.zeros(0, np.int32))
                set_(self, f"{side}_feature_weights", np.zeros(0, np.float32))
        for name, dtype in ARRAY_DTYPES.items():
            set_(self, name, _read_only(getattr(self, name), dtype))
        for name in ID_MAP_FIELDS.values():
            value = getattr(self, name)
            set_(self, name, value if isinstance(value, IdMap) else IdMap(value))
        for name in NAME_FIELDS:
            set_(self, name, tuple(getattr(self, name)))
        for name in ("params", "metrics", "training"):
            set_(self, name, MappingProxyType(dict(getattr(self, name))))
        self._check_shapes()

        # The kernel multiplies by the (d + 1, n_items) transpose: see topk.py.
        set_(self, "_item_matrix_t", _read_only(self.item_matrix.T, np.float32))
        norms = np.linalg.norm(self.item_matrix[:, : self.dim], axis=1).astype(np.float32)
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        set_(self, "inverse_item_norms", _read_only(inverse, np.float32))
        # Cosine similarity is one product with the unit vectors (zero vectors stay zero).
        unit = self.item_matrix[:, : self.dim] * inverse[:, None]
        set_(self, "_unit_items_t", _read_only(unit.T, np.float32))
        user_norms = np.linalg.norm(self.user_vectors, axis=1)
        user_norms = user_norms[user_norms > 0]
        set_(self, "typical_user_norm", float(np.median(user_norms)) if len(user_norms) else 1.0)
        set_(self, "score_moments", ScoreMoments.of(self.item_matrix))
        set_(self, "demographic_values", _demographic_values(self.user_feature_names))

        masks: dict[str, np.ndarray] = {}
        for code, name in enumerate(self.category_names):
            key = name.casefold()  # "Loans" and "loans" are one filter
            masks[key] = masks.get(key, False) | (self.item_categories == code)
        set_(
            self,
            "_category_masks",
            MappingProxyType({key: _read_only(mask, np.bool_) for key, mask in masks.items()}),
        )
        set_(
            self,
            "_category_rows",
            MappingProxyType(
                {key: _read_only(np.flatnonzero(mask), np.int64) for key, mask in masks.items()}
            ),
        )
        set_(
            self,
            "popular_items",
            Popularity(self.popularity, self.segment_keys, self.segment_popularity),
        )

    @classmethod
    def from_lists(cls, arrays: Mapping[str, Any], names: Mapping[str, Sequence[str]], **meta):
        """An index from its arrays and its id and name lists, as the artifacts store them."""
        id_maps = {attr: IdMap(names[key]) for key, attr in ID_MAP_FIELDS.items()}
        return cls(**arrays, **id_maps, **{n: tuple(names[n]) for n in NAME_FIELDS}, **meta)

    def name_lists(self) -> dict[str, list[str]]:
        """The id and name lists under their artifact names (`from_lists`' `names`)."""
        lists = {key: list(getattr(self, attr).ids) for key, attr in ID_MAP_FIELDS.items()}
        return lists | {name: list(getattr(self, name)) for name in NAME_FIELDS}

    # --- shape ------------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.user_vectors.shape[1]

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def with_version(self, version: str) -> EmbeddingIndex:
        return replace(self, version=version)

    # --- lookups ----------------------------------------------------------------------------------

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

    def user_feature_row(self, user_row: int) -> tuple[np.ndarray, np.ndarray]:
        """(feature rows, weights) a trained user's vector was built from; empty when not known."""
        start, end = self.user_feature_indptr[user_row], self.user_feature_indptr[user_row + 1]
        return self.user_feature_indices[start:end], self.user_feature_weights[start:end]

    def item_feature_row(self, item_row: int) -> tuple[np.ndarray, np.ndarray]:
        """(feature rows, weights) an item's vector was built from; empty when not known."""
        start, end = self.item_feature_indptr[item_row], self.item_feature_indptr[item_row + 1]
        return self.item_feature_indices[start:end], self.item_feature_weights[start:end]

    def category_mask(self, category: str) -> np.ndarray | None:
        """Read-only bool mask of the items in a category (case-insensitive); None if unknown."""
        return self._category_masks.get(category.casefold())

    def category_rows(self, category: str) -> np.ndarray | None:
        """The same as ascending rows: an allow-list the kernel takes without converting it."""
        return self._category_rows.get(category.casefold())

    # --- queries: (d + 1,) vectors whose trailing 1 picks up the item bias ------------------------

    def user_queries(self, user_rows: Sequence[int]) -> np.ndarray:
        """The trained users' query vectors, (len(user_rows), d + 1), in one gather."""
        queries = np.empty((len(user_rows), self.dim + 1), dtype=np.float32)
        np.take(self.user_vectors, user_rows, axis=0, out=queries[:, : self.dim])
        queries[:, self.dim] = 1.0
        return queries

    # --- ranking ----------------------------------------------------------------------------------

    def rank(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Filters = None,
        allowed: Filters = None,
    ) -> TopK:
        """Each query's best `k` items by `query · item_matrix`: a (b, d + 1) block."""
        return topk(queries, self._item_matrix_t, k, exclude=exclude, allowed=allowed)

    def similar_items(self, rows: np.ndarray, k: int, *, allowed: Filters = None) -> TopK:
        """Each item's best `k` neighbours by cosine of item vectors, never the item itself:
        one product of its unit vector with the unit item matrix."""
        queries = self._unit_items_t[:, rows].T
        itself = rows if len(rows) == 1 else [row[None] for row in rows]
        return topk_of_scores(queries @ self._unit_items_t, k, exclude=itself, allowed=allowed)

    def cosines(self, rows: np.ndarray, other_rows: np.ndarray) -> np.ndarray:
        """(len(rows), len(other_rows)) cosines of item vectors, as `similar_items` ranks:
        two gathers from the unit vectors and one product (scaling afterwards costs 3× more)."""
        return self._unit_items_t[:, rows].T @ self._unit_items_t[:, other_rows]

    def similar(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        exclude: Filters = None,
        allowed: Filters = None,
    ) -> TopK:
        """Each vector's best `k` items by cosine of item vectors: (b, d) or `item_matrix`-like
        (b, d + 1) rows (the bias is ignored). A zero vector has no neighbours."""
        if vectors.ndim != 2 or vectors.shape[1] not in (self.dim, self.dim + 1):
            raise ValueError(f"vectors must have shape (b, {self.dim}) or (b, {self.dim + 1})")
        queries = vectors[:, : self.dim].astype(np.float32)
        lengths = np.linalg.norm(queries, axis=1)
        pointing = lengths > 0
        queries[pointing] /= lengths[pointing, None]
        scores = queries @ self._unit_items_t
        scores[~pointing] = -np.inf  # a zero vector points nowhere
        return topk_of_scores(scores, k, exclude=exclude, allowed=allowed)

    def popular(
        self,
        k: int,
        *,
        exclude: Filters = None,
        allowed: Filters = None,
        segment: Mapping[str, str] | None = None,
    ) -> TopK:
        """The `k` most popular items, within the demographic `segment` when one is known (see
        `Popularity`); items nobody touched follow in row order."""
        scores = self.popular_items.scores(segment)
        return topk_of_scores(scores[None, :], k, exclude=exclude, allowed=allowed)

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
            "user_feature_indptr": (n_users + 1,),
            "item_feature_indptr": (n_items + 1,),
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
        for prefix, columns in (
            ("seen_", n_items),
            ("user_feature_", len(self.user_feature_names)),
            ("item_feature_", len(self.item_feature_names)),
        ):
            indptr, indices = getattr(self, prefix + "indptr"), getattr(self, prefix + "indices")
            if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
                raise ValueError(f"{prefix}indptr is not a CSR row pointer for {prefix}indices")
            if len(indices) and (indices.min() < 0 or indices.max() >= columns):
                raise ValueError(f"{prefix}indices has columns outside its names")
        for side in ("user", "item"):
            indices = getattr(self, f"{side}_feature_indices")
            if getattr(self, f"{side}_feature_weights").shape != indices.shape:
                raise ValueError(f"{side}_feature_weights does not match {side}_feature_indices")


ARRAY_DTYPES: dict[str, type] = {
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
    "user_feature_indptr": np.int64,
    "user_feature_indices": np.int32,
    "user_feature_weights": np.float32,
    "item_feature_indptr": np.int64,
    "item_feature_indices": np.int32,
    "item_feature_weights": np.float32,
}
ARRAY_FIELDS = tuple(ARRAY_DTYPES)
# Arrays an index may lack (versions written before them load without them).
FEATURE_ROW_FIELDS = tuple(
    f"{side}_feature_{part}"
    for side in ("user", "item")
    for part in ("indptr", "indices", "weights")
)


def _demographic_values(names: IdMap) -> Mapping[str, tuple[str, ...]]:
    """Per demographic field, the values the model has a feature for (`age_group:25-34`)."""
    values: dict[str, list[str]] = {name: [] for name in DEMOGRAPHIC_FIELDS}
    for name in names:
        field_name, _, value = name.partition(":")
        if field_name in values:
            values[field_name].append(value)
    return MappingProxyType({name: tuple(sorted(found)) for name, found in values.items()})


def _read_only(array: Any, dtype: type) -> np.ndarray:
    view = np.ascontiguousarray(array, dtype=dtype).view()
    view.flags.writeable = False
    return view
