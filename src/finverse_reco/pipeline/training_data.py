"""Stored interaction documents + the catalog → the matrices the hybrid model trains on.

One pass over the documents appends compact codes and numbers to typed arrays (no per-event
objects), then everything else is vectorised: weights, the user×item matrix (duplicates summed),
behaviour features (a sparse product of interactions and item categories), popularity.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.catalog.base import Product
from finverse_reco.pipeline.features import (
    DEMOGRAPHIC_FIELDS,
    FeatureConfig,
    activity_feature,
    demographic_features,
    item_identity_feature,
    item_side_features,
    query_terms,
    segment_keys,
    user_identity_feature,
)
from finverse_reco.pipeline.weighting import (
    SEARCH_TYPE,
    VIEW_TYPE,
    WeightingConfig,
    aware,
    decay_factor,
    event_weights,
    touched_products,
)

_NO_DATA: Mapping[str, Any] = {}


@dataclass
class TrainingData:
    """Everything training and the serving index need, rows aligned with `user_ids` / `item_ids`."""

    interactions: sp.coo_matrix  # n_users × n_items, float32 decayed weights (> 0)
    user_ids: list[str]
    item_ids: list[str]
    user_features: sp.csr_matrix  # n_users × n_user_features, rows sum to 1 (or 0: nothing known)
    item_features: sp.csr_matrix  # n_items × n_item_features, rows sum to 1
    user_feature_names: list[str]
    item_feature_names: list[str]
    user_demographics: dict[str, dict[str, str]]  # latest known, per user id
    item_meta: dict[str, dict[str, str]]  # {"category", "institution"} per item id ("" if unknown)
    popularity: np.ndarray  # float32 per item: decayed interaction weight over all users
    segment_popularity: dict[str, np.ndarray]  # "age_group=25-34" → float32 per item
    data_window: tuple[datetime | None, datetime | None]
    counts: dict[str, int]
    reference_time: datetime
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)


def build_training_data(
    batches: Iterable[list[dict[str, Any]]],
    products: Sequence[Product],
    config: WeightingConfig,
    now: datetime | None = None,
    *,
    feature_config: FeatureConfig | None = None,
) -> TrainingData:
    """Build the training matrices. `now` is the decay reference (default: the newest event)."""
    feature_config = feature_config or FeatureConfig()
    scan = _EventScan(config)
    for batch in batches:
        scan.add(batch)
    return _assemble(scan, products, config, now, feature_config)


class _EventScan:
    """The one pass over the documents: ids become codes, numbers go to typed arrays."""

    def __init__(self, config: WeightingConfig) -> None:
        self.type_weights = dict(config.type_weights)
        self.user_codes: dict[str, int] = {}
        self.item_codes: dict[str, int] = {}
        self.user_event_counts = array("l")
        # One entry per (event, product) with a positive base weight.
        self.users = array("l")
        self.items = array("l")
        self.base = array("d")
        self.is_view = array("b")
        self.duration = array("d")
        self.spread = array("d")
        self.timestamps = array("d")
        # Searches: (user, category code, time) and (user, term code, time).
        self.search_categories: dict[str, int] = {}
        self.search_category_rows = (array("l"), array("l"), array("d"))
        self.search_terms: dict[str, int] = {}
        self.search_term_rows = (array("l"), array("l"), array("d"))
        self.demographics: dict[int, Mapping[str, Any]] = {}
        self.demographics_time: dict[int, float] = {}
        self.item_event_meta: dict[int, tuple[str | None, str | None]] = {}
        self.first_ts = math.inf
        self.last_ts = -math.inf
        self.documents = 0
        self.skipped = 0
        self.searches = 0
        self.unknown_type = 0

    def add(self, batch: Iterable[Mapping[str, Any]]) -> None:
        # Locals: this loop runs once per document (millions), attribute lookups add up.
        user_codes, item_codes, type_weights = self.user_codes, self.item_codes, self.type_weights
        counts = self.user_event_counts
        users, items, bases, views = self.users, self.items, self.base, self.is_view
        durations, spreads, times = self.duration, self.spread, self.timestamps
        demographics, demographics_time = self.demographics, self.demographics_time
        item_event_meta = self.item_event_meta
        first_ts, last_ts = self.first_ts, self.last_ts
        nan = math.nan
        for doc in batch:
            self.documents += 1
            try:
                user_id = doc["user_id"]
                event_type = doc["type"]
                moment = doc["timestamp"]
                if type(moment) is not datetime:
                    moment = _parse_timestamp(moment)
                ts = aware(moment).timestamp()
                data = doc.get("data") or _NO_DATA
            except (KeyError, AttributeError, TypeError, ValueError):
                self.skipped += 1
                continue
            if not user_id or not isinstance(user_id, str):
                self.skipped += 1
                continue
            user = user_codes.get(user_id)
            if user is None:
                user = user_codes[user_id] = len(user_codes)
                counts.append(0)
            counts[user] += 1
            if ts < first_ts:
                first_ts = ts
            if ts > last_ts:
                last_ts = ts
            demo = data.get("userDemographics")
            if demo and ts >= demographics_time.get(user, -math.inf):
                demographics_time[user] = ts
                demographics[user] = demo
            if event_type == SEARCH_TYPE:
                self._add_search(user, data, ts)
                continue
            base = type_weights.get(event_type)
            if base is None:
                self.unknown_type += 1
                continue
            if base <= 0:
                continue
            products = touched_products(data)
            if not products:
                self.skipped += 1
                continue
            is_view = event_type == VIEW_TYPE
            duration = data.get("viewDuration") if is_view else None
            duration = nan if duration is None else float(duration)
            spread = float(len(products))
            category = data.get("category")
            # One `institution` on an event naming several products cannot say whose it is.
            institution = data.get("institution") if len(products) == 1 else None
            for product_id in products:
                item = item_codes.get(product_id)
                if item is None:
                    item = item_codes[product_id] = len(item_codes)
                users.append(user)
                items.append(item)
                bases.append(base)
                views.append(is_view)
                durations.append(duration)
                spreads.append(spread)
                times.append(ts)
                if category or institution:
                    known = item_event_meta.get(item, (None, None))
                    item_event_meta[item] = (category or known[0], institution or known[1])
        self.first_ts, self.last_ts = first_ts, last_ts

    def _add_search(self, user: int, data: Mapping[str, Any], ts: float) -> None:
        self.searches += 1
        category = data.get("category")
        if category:
            code = self.search_categories.setdefault(category, len(self.search_categories))
            for column, value in zip(self.search_category_rows, (user, code, ts), strict=True):
                column.append(value)
        query = data.get("query")
        if query:
            for term in query_terms(query):
                code = self.search_terms.setdefault(term, len(self.search_terms))
                for column, value in zip(self.search_term_rows, (user, code, ts), strict=True):
                    column.append(value)


def _assemble(
    scan: _EventScan,
    products: Sequence[Product],
    config: WeightingConfig,
    now: datetime | None,
    feature_config: FeatureConfig,
) -> TrainingData:
    catalog = {}
    for product in products:
        catalog[product.id] = product
        scan.item_codes.setdefault(product.id, len(scan.item_codes))

    # Rows in id order, so the same data gives the same matrices whatever the scan order.
    user_ids, user_rank = _sorted_codes(scan.user_codes)
    item_ids, item_rank = _sorted_codes(scan.item_codes)
    n_users, n_items = len(user_ids), len(item_ids)

    has_events = scan.last_ts > -math.inf
    if now is None:
        now = datetime.fromtimestamp(scan.last_ts, UTC) if has_events else datetime.now(UTC)
    reference_time = aware(now)
    reference = reference_time.timestamp()

    timestamps = np.frombuffer(scan.timestamps, dtype=np.float64)
    weights = event_weights(
        np.frombuffer(scan.base, dtype=np.float64),
        np.frombuffer(scan.is_view, dtype=np.int8).astype(bool),
        np.frombuffer(scan.duration, dtype=np.float64),
        np.frombuffer(scan.spread, dtype=np.float64),
        reference - timestamps,
        config,
    )
    rows = user_rank[np.frombuffer(scan.users, dtype=np.int64)]
    cols = item_rank[np.frombuffer(scan.items, dtype=np.int64)]
    matrix = sp.csr_matrix((weights, (rows, cols)), shape=(n_users, n_items))  # sums duplicates
    matrix.eliminate_zeros()  # fully decayed (underflow) entries are no interaction
    interactions = matrix.astype(np.float32).tocoo()

    item_meta, item_categories, item_institutions = _item_meta(scan, catalog, item_ids, item_rank)
    demographics_by_row = {
        int(user_rank[code]): {
            k: str(v).strip() for k in DEMOGRAPHIC_FIELDS if (v := demo.get(k)) and str(v).strip()
        }
        for code, demo in scan.demographics.items()
    }

    user_features, user_feature_names = _user_features(
        scan,
        matrix,
        user_ids,
        user_rank,
        (item_categories, item_institutions),
        demographics_by_row,
        reference,
        config,
        feature_config,
    )
    item_features, item_feature_names = _item_features(
        matrix, item_ids, item_meta, catalog, feature_config
    )

    popularity = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
    segment_popularity = _segment_popularity(matrix, demographics_by_row, feature_config)

    interacted_items = int(np.count_nonzero(np.diff(matrix.tocsc().indptr)))
    window = (
        (datetime.fromtimestamp(scan.first_ts, UTC), datetime.fromtimestamp(scan.last_ts, UTC))
        if has_events
        else (None, None)
    )
    counts = {
        "documents": scan.documents,
        "skipped": scan.skipped,
        "searches": scan.searches,
        "unknown_type": scan.unknown_type,
        "product_events": len(scan.users),
        "users": n_users,
        "items": n_items,
        "catalog_items": len(catalog),
        "cold_items": n_items - interacted_items,
        "interactions": int(interactions.nnz),
    }
    return TrainingData(
        interactions=interactions,
        user_ids=user_ids,
        item_ids=item_ids,
        user_features=user_features,
        item_features=item_features,
        user_feature_names=user_feature_names,
        item_feature_names=item_feature_names,
        user_demographics={user_ids[row]: demo for row, demo in demographics_by_row.items()},
        item_meta=item_meta,
        popularity=popularity,
        segment_popularity=segment_popularity,
        data_window=window,
        counts=counts,
        reference_time=reference_time,
        weighting=config,
        feature_config=feature_config,
    )


def _sorted_codes(codes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """Ids sorted, and code → row position."""
    ids = sorted(codes)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[np.fromiter((codes[i] for i in ids), dtype=np.int64, count=len(ids))] = np.arange(len(ids))
    return ids, rank


def _item_meta(
    scan: _EventScan,
    catalog: Mapping[str, Product],
    item_ids: list[str],
    item_rank: np.ndarray,
) -> tuple[dict[str, dict[str, str]], list[str], list[str]]:
    """Category and institution per item row: the catalog's, else what events said."""
    from_events = {int(item_rank[code]): meta for code, meta in scan.item_event_meta.items()}
    categories, institutions = [], []
    for row, item_id in enumerate(item_ids):
        product = catalog.get(item_id)
        if product is not None:
            categories.append(product.category or "")
            institutions.append(product.institution or "")
        else:
            category, institution = from_events.get(row, (None, None))
            categories.append(category or "")
            institutions.append(institution or "")
    meta = {
        item_id: {"category": c, "institution": i}
        for item_id, c, i in zip(item_ids, categories, institutions, strict=True)
    }
    return meta, categories, institutions


def _user_features(
    scan: _EventScan,
    matrix: sp.csr_matrix,
    user_ids: list[str],
    user_rank: np.ndarray,
    item_labels: tuple[list[str], list[str]],
    demographics_by_row: Mapping[int, Mapping[str, str]],
    reference: float,
    config: WeightingConfig,
    feature_config: FeatureConfig,
) -> tuple[sp.csr_matrix, list[str]]:
    n_users = len(user_ids)
    blocks: list[tuple[sp.csr_matrix, list[str]]] = []

    demo_names = [demographic_features(demographics_by_row.get(r)) for r in range(n_users)]
    blocks.append(_one_hot_rows([list(d) for d in demo_names], ""))

    # What a user engaged with, in proportion to how much: interactions × item one-hot.
    for prefix, labels in zip(
        ("engaged_category:", "engaged_institution:"), item_labels, strict=True
    ):
        one_hot, names = _one_hot_rows([[v] if v else [] for v in labels], prefix)
        blocks.append((_row_normalised(matrix @ one_hot), names))

    counts = np.frombuffer(scan.user_event_counts, dtype=np.int64)
    by_row = np.empty(n_users, dtype=np.int64)
    by_row[user_rank] = counts
    blocks.append(_one_hot_rows([[activity_feature(int(c), feature_config)] for c in by_row], ""))

    decay = _Decay(reference, config.decay_half_life_days)
    blocks.append(
        _search_block(
            scan.search_category_rows,
            scan.search_categories,
            "search_category:",
            user_rank,
            decay,
            min_users=1,
            top_n=None,
        )
    )
    blocks.append(
        _search_block(
            scan.search_term_rows,
            scan.search_terms,
            "search_term:",
            user_rank,
            decay,
            min_users=feature_config.min_search_term_users,
            top_n=feature_config.max_search_terms_per_user,
        )
    )

    side = sp.hstack([b for b, _ in blocks], format="csr", dtype=np.float64)
    side_names = [name for _, names in blocks for name in names]
    has_identity = np.diff(matrix.indptr) > 0
    identity_names = [user_identity_feature(user_ids[r]) for r in np.flatnonzero(has_identity)]
    features = _balanced(has_identity, side, feature_config.identity_weight)
    return features, identity_names + side_names


def _item_features(
    matrix: sp.csr_matrix,
    item_ids: list[str],
    item_meta: Mapping[str, Mapping[str, str]],
    catalog: Mapping[str, Product],
    feature_config: FeatureConfig,
) -> tuple[sp.csr_matrix, list[str]]:
    per_item = [
        item_side_features(
            item_meta[item_id]["category"],
            item_meta[item_id]["institution"],
            catalog.get(item_id),
            feature_config,
        )
        for item_id in item_ids
    ]
    side, side_names = _one_hot_rows(per_item, "")
    has_identity = np.diff(matrix.tocsc().indptr) > 0
    identity_names = [item_identity_feature(item_ids[r]) for r in np.flatnonzero(has_identity)]
    features = _balanced(has_identity, side, feature_config.identity_weight)
    return features, identity_names + side_names


def _search_block(
    columns: tuple[array, array, array],
    vocabulary: Mapping[str, int],
    prefix: str,
    user_rank: np.ndarray,
    decay: _Decay,
    *,
    min_users: int,
    top_n: int | None,
) -> tuple[sp.csr_matrix, list[str]]:
    """Decayed search interest per user and category/term, each user's row summing to 1."""
    users = user_rank[np.frombuffer(columns[0], dtype=np.int64)]
    codes = np.frombuffer(columns[1], dtype=np.int64)
    weights = decay(np.frombuffer(columns[2], dtype=np.float64))
    names = sorted(vocabulary, key=vocabulary.__getitem__)
    counts = sp.csr_matrix((weights, (users, codes)), shape=(len(user_rank), len(names)))
    counts.eliminate_zeros()
    users_per_term = np.diff(counts.tocsc().indptr)
    keep = np.flatnonzero(users_per_term >= min_users)
    counts = counts[:, keep].tocsr()
    if top_n is not None:
        counts = _top_n_per_row(counts, top_n)
    return _row_normalised(counts), [prefix + names[k] for k in keep]


@dataclass(frozen=True)
class _Decay:
    reference: float
    half_life_days: float

    def __call__(self, timestamps: np.ndarray) -> np.ndarray:
        return decay_factor(self.reference - timestamps, self.half_life_days)


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise TypeError(f"timestamp must be a datetime, not {type(value).__name__}")


def _top_n_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    matrix = matrix.copy()
    lengths = np.diff(matrix.indptr)
    for row in np.flatnonzero(lengths > n):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        values = matrix.data[start:end]
        values[np.argsort(values)[:-n]] = 0.0
    matrix.eliminate_zeros()
    return matrix


def _one_hot_rows(labels_per_row: list[list[str]], prefix: str) -> tuple[sp.csr_matrix, list[str]]:
    """Rows of labels → 0/1 csr matrix and its column names (prefix + label, first-seen order)."""
    vocabulary: dict[str, int] = {}
    indptr = np.zeros(len(labels_per_row) + 1, dtype=np.int64)
    indices: list[int] = []
    for row, labels in enumerate(labels_per_row):
        for label in labels:
            indices.append(vocabulary.setdefault(label, len(vocabulary)))
        indptr[row + 1] = len(indices)
    data = np.ones(len(indices), dtype=np.float64)
    matrix = sp.csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(labels_per_row), len(vocabulary)),
    )
    matrix.sum_duplicates()
    return matrix, [prefix + label for label in vocabulary]


def _row_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)


def _balanced(
    has_identity: np.ndarray, side: sp.csr_matrix, identity_weight: float
) -> sp.csr_matrix:
    """[identity | side] with each row summing to 1: identity takes `identity_weight` when the row
    also has side features (all of it otherwise), side features share the rest by their weights."""
    side_sums = np.asarray(side.sum(axis=1)).ravel()
    has_side = side_sums > 0
    side_share = np.where(has_identity, 1.0 - identity_weight, 1.0)
    scale = np.divide(side_share, side_sums, out=np.zeros_like(side_sums), where=has_side)
    side = sp.diags(scale) @ side

    identity_rows = np.flatnonzero(has_identity)
    identity_values = np.where(has_side[identity_rows], identity_weight, 1.0)
    identity = sp.csr_matrix(
        (identity_values, (identity_rows, np.arange(len(identity_rows)))),
        shape=(len(has_identity), len(identity_rows)),
    )
    features = sp.hstack([identity, side], format="csr").astype(np.float32)
    features.eliminate_zeros()
    features.sort_indices()
    return features


def _segment_popularity(
    matrix: sp.csr_matrix,
    demographics_by_row: Mapping[int, Mapping[str, str]],
    feature_config: FeatureConfig,
) -> dict[str, np.ndarray]:
    """Per demographic value with enough users, the decayed weight per item among those users."""
    members: dict[str, list[int]] = {}
    for row, demo in demographics_by_row.items():
        for key in segment_keys(demo):
            members.setdefault(key, []).append(row)
    eligible = [k for k, rows in members.items() if len(rows) >= feature_config.min_segment_users]
    eligible.sort(key=lambda k: (-len(members[k]), k))
    eligible = sorted(eligible[: feature_config.max_segments])
    if not eligible:
        return {}
    rows = np.concatenate([members[k] for k in eligible])
    segments = np.repeat(np.arange(len(eligible)), [len(members[k]) for k in eligible])
    membership = sp.csr_matrix(
        (np.ones(len(rows)), (segments, rows)), shape=(len(eligible), matrix.shape[0])
    )
    scores = np.asarray((membership @ matrix).todense(), dtype=np.float32)
    return {key: np.ascontiguousarray(scores[i]) for i, key in enumerate(eligible)}
