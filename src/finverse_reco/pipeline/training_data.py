"""Stored interaction documents + the catalog → the matrices the hybrid model trains on.

Documents are read batch by batch into compact codes and numbers (no per-event objects are kept),
then everything else is vectorised: weights, the user×item matrix (duplicates summed), behaviour
features (a sparse product of interactions and item categories), popularity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.events import InteractionColumns
from finverse_reco.pipeline.features import (
    DEMOGRAPHIC_FIELDS,
    FeatureConfig,
    activity_features,
    demographic_features,
    item_identity_feature,
    item_side_features,
    query_terms,
    segment_key,
    user_identity_feature,
)
from finverse_reco.pipeline.idmap import IdMap
from finverse_reco.pipeline.weighting import (
    DISMISS_TYPE,
    SEARCH_TYPE,
    VIEW_TYPE,
    WeightingConfig,
    aware,
    decay_factor,
    event_weights,
)
from finverse_reco.products import Product

_NEVER = (-math.inf, None)


@dataclass(frozen=True, slots=True)
class _Coded:
    """One batch's columns with their type codes; `positive` indexes rows of a weighted type."""

    columns: InteractionColumns
    codes: np.ndarray
    positive: np.ndarray


@dataclass
class TrainingData:
    """Everything training and the serving index need, rows aligned with `users` / `items`."""

    interactions: sp.coo_matrix  # n_users × n_items, float32 decayed weights (> 0)
    users: IdMap
    items: IdMap
    user_features: sp.csr_matrix  # n_users × n_user_features, rows sum to 1 (or 0: nothing known)
    item_features: sp.csr_matrix  # n_items × n_item_features, rows sum to 1
    user_feature_names: IdMap
    item_feature_names: IdMap
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
    batches: Iterable[Iterable[Mapping[str, Any]]],
    products: Sequence[Product],
    config: WeightingConfig,
    now: datetime | None = None,
    *,
    feature_config: FeatureConfig | None = None,
) -> TrainingData:
    """Build the training matrices from batches of stored documents (evaluation, tests); the
    service streams the store's columns into a `TrainingDataBuilder` instead. `now` is the decay
    reference (default: the newest event)."""
    builder = TrainingDataBuilder(config, feature_config=feature_config)
    for batch in batches:
        builder.add(InteractionColumns.from_documents(batch))
    return builder.build(products, now)


def build_labelled_training_data(
    interactions: sp.spmatrix,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    user_labels: Sequence[Mapping[str, str]],
    item_labels: Sequence[Sequence[str]],
    *,
    feature_config: FeatureConfig | None = None,
) -> TrainingData:
    """Training data from a ready user × item weight matrix and static categorical labels (a
    dataset such as MovieLens-100K, or a CSV export): feature rows, identity mix and popularity
    lists built as `build_training_data` builds them, for data that is not a stream of events.

    `user_labels[row]` maps a column to its value: `{"age_group": "25-34"}` is the feature
    `age_group:25-34` and the popularity segment `age_group=25-34`. `item_labels[row]` lists the
    item's feature names. Rows without interactions get no identity feature, only their labels.
    """
    feature_config = feature_config or FeatureConfig()
    matrix = sp.csr_matrix(interactions, dtype=np.float64)
    matrix.eliminate_zeros()
    if matrix.shape != (len(user_ids), len(item_ids)):
        raise ValueError("interactions must be len(user_ids) × len(item_ids)")
    if len(user_labels) != len(user_ids) or len(item_labels) != len(item_ids):
        raise ValueError("one label set per user and per item")
    demographics: dict[int, dict[str, str]] = {}
    for row, labels in enumerate(user_labels):
        allowed = feature_config.allowed_demographics(labels)
        clean = {k: v.strip() for k, v in allowed.items() if v and v.strip()}
        if clean:
            demographics[row] = clean
    names = [
        [f"{k}:{v}" for k, v in demographics.get(row, {}).items()] for row in range(len(user_ids))
    ]
    user_features, user_feature_names = _with_identity(
        [_one_hot_rows(names, "")],
        np.diff(matrix.indptr) > 0,
        user_ids,
        user_identity_feature,
        feature_config.user_identity_weight,
    )
    item_degree = np.diff(matrix.tocsc().indptr)
    item_features, item_feature_names = _with_identity(
        [_one_hot_rows(item_labels, "")],
        item_degree > 0,
        item_ids,
        item_identity_feature,
        feature_config.item_identity_weight,
    )
    interactions_coo = matrix.astype(np.float32).tocoo()
    return _training_data(
        interactions_coo,
        matrix,
        (user_ids, user_features, user_feature_names),
        (item_ids, item_features, item_feature_names),
        demographics,
        item_meta={item_id: {"category": "", "institution": ""} for item_id in item_ids},
        data_window=(None, None),
        counts={
            "users": len(user_ids),
            "items": len(item_ids),
            "cold_items": int(np.count_nonzero(item_degree == 0)),
            "interactions": int(interactions_coo.nnz),
        },
        reference_time=datetime.fromtimestamp(0, UTC),
        feature_config=feature_config,
    )


def _training_data(
    interactions: sp.coo_matrix,
    matrix: sp.csr_matrix,
    users: tuple[Sequence[str], sp.csr_matrix, Sequence[str]],
    items: tuple[Sequence[str], sp.csr_matrix, Sequence[str]],
    demographics: Mapping[int, Mapping[str, Any]],
    **rest: Any,
) -> TrainingData:
    """What both builders derive alike: the id maps, demographics by id and the popularity lists.
    `users` and `items` are (ids, feature rows, feature names)."""
    (user_ids, user_features, user_names), (item_ids, item_features, item_names) = users, items
    return TrainingData(
        interactions=interactions,
        users=IdMap(user_ids),
        items=IdMap(item_ids),
        user_features=user_features,
        item_features=item_features,
        user_feature_names=IdMap(user_names),
        item_feature_names=IdMap(item_names),
        user_demographics={user_ids[row]: demo for row, demo in demographics.items()},
        popularity=np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel(),
        segment_popularity=_segment_popularity(matrix, demographics, rest["feature_config"]),
        **rest,
    )


class TrainingDataBuilder:
    """Accumulates interactions batch by batch (`InteractionColumns`, as the store's scan yields
    them), keeping only compact codes and numbers, so a caller streaming from the store never holds
    the documents themselves. Each batch is handled column by column: a million interactions take
    a few seconds, not tens."""

    def __init__(
        self, config: WeightingConfig, *, feature_config: FeatureConfig | None = None
    ) -> None:
        self._config = config
        self._feature_config = feature_config or FeatureConfig()
        # Type codes index `_type_base`; searches and unknown types get codes with base weight 0.
        names = [
            *config.type_weights,
            *([] if SEARCH_TYPE in config.type_weights else [SEARCH_TYPE]),
        ]
        self._type_codes = {name: code for code, name in enumerate(names)}
        self._unknown_code = len(names)
        self._type_base = np.array(
            [config.type_weights.get(name, 0.0) for name in names] + [0.0], dtype=np.float64
        )
        self._view_code = self._type_codes.get(VIEW_TYPE, -1)
        self._search_code = self._type_codes[SEARCH_TYPE]
        self._dismiss_code = self._type_codes.get(DISMISS_TYPE, -1)
        self._user_codes: dict[str, int] = {}
        self._item_codes: dict[str, int] = {}
        self._doc_users: list[np.ndarray] = []  # per batch: user code of every document
        # Per batch, one entry per (event, product) of a type with a positive base weight.
        self._pairs: dict[str, list[np.ndarray]] = {
            k: [] for k in ("user", "item", "type", "duration", "spread", "time")
        }
        self._search_categories: dict[str, int] = {}
        self._search_category_rows: list[tuple[int, int, float]] = []  # user, code, time
        self._search_terms: dict[str, int] = {}
        self._search_term_rows: list[tuple[int, int, float]] = []
        # (user code, product id, time) of every dismissal: product ids, not codes, so a product
        # known only by dismissals never becomes an item.
        self._dismissals: list[tuple[int, str, float]] = []
        self._demographics: dict[int, tuple[float, Mapping[str, Any]]] = {}  # newest per user
        self._item_event_meta: dict[int, tuple[str | None, str | None]] = {}
        self._complete_meta: set[int] = set()
        self._first_ts = math.inf
        self._last_ts = -math.inf
        self._counts = dict.fromkeys(
            ("documents", "skipped", "searches", "unknown_type", "dismissals"), 0
        )

    def add(self, columns: InteractionColumns) -> None:
        self._counts["documents"] += len(columns) + columns.skipped
        self._counts["skipped"] += columns.skipped
        if not len(columns):
            return
        type_codes, unknown = self._type_codes, self._unknown_code
        codes = np.array([type_codes.get(kind, unknown) for kind in columns.types], dtype=np.int16)
        c = _Coded(columns, codes, np.flatnonzero(self._type_base[codes] > 0))
        user_codes = self._user_codes
        users = np.array(
            [user_codes.setdefault(u, len(user_codes)) for u in columns.user_ids], dtype=np.int64
        )
        self._doc_users.append(users)
        self._first_ts = min(self._first_ts, float(columns.timestamps.min()))
        self._last_ts = max(self._last_ts, float(columns.timestamps.max()))
        self._counts["unknown_type"] += int(np.count_nonzero(codes == unknown))
        self._commit_demographics(users, columns)
        for i in np.flatnonzero(codes == self._search_code).tolist():
            self._add_search(int(users[i]), columns, i)
        for i in np.flatnonzero(codes == self._dismiss_code).tolist():
            if columns.product_ids[i]:
                self._dismissals.append(
                    (int(users[i]), columns.product_ids[i], float(columns.timestamps[i]))
                )
        self._counts["dismissals"] = len(self._dismissals)
        self._commit_products(users, c)

    def _commit_demographics(self, users: np.ndarray, c: InteractionColumns) -> None:
        """Keep each user's newest demographics (ties: the later document wins)."""
        carrying = [i for i, demographics in enumerate(c.demographics) if demographics]
        if not carrying:
            return
        rows = np.array(carrying)
        order = rows[np.lexsort((c.timestamps[rows], users[rows]))]
        last_of_user = np.append(users[order][1:] != users[order][:-1], True)
        stored = self._demographics
        for i in order[last_of_user].tolist():
            user, ts = int(users[i]), float(c.timestamps[i])
            if ts >= stored.get(user, _NEVER)[0]:
                stored[user] = (ts, c.demographics[i])

    def _commit_products(self, users: np.ndarray, coded: _Coded) -> None:
        c, positive = coded.columns, coded.positive.tolist()
        item_codes = self._item_codes
        single = [c.product_ids[k] for k in positive]
        several = [c.compared_ids[k] for k in positive]
        # Most events name one product: coded in one pass; comparisons are spread item by item.
        one = [k for k, (p, more) in enumerate(zip(single, several, strict=True)) if p and not more]
        event_list = [positive[k] for k in one]
        items = [item_codes.setdefault(single[k], len(item_codes)) for k in one]
        spread_list = [1.0] * len(items)
        for k in [k for k, more in enumerate(several) if more]:
            products = [p for p in c.touched(positive[k]) if p]
            for product_id in products:
                event_list.append(positive[k])
                items.append(item_codes.setdefault(product_id, len(item_codes)))
                spread_list.append(float(len(products)))
        events = np.array(event_list, dtype=np.int64)
        spread = np.array(spread_list)
        self._counts["skipped"] += len(positive) - len(np.unique(events))
        self._pairs["user"].append(users[events])
        self._pairs["item"].append(np.array(items, dtype=np.int64))
        self._pairs["type"].append(coded.codes[events])
        self._pairs["duration"].append(c.view_durations[events])
        self._pairs["spread"].append(spread)
        self._pairs["time"].append(c.timestamps[events])
        self._remember_item_meta(items, events.tolist(), spread, c)

    def _remember_item_meta(
        self, items: list[int], events: list[int], spread: np.ndarray, c: InteractionColumns
    ) -> None:
        """Category/institution from events: the fallback for products the catalog lacks."""
        complete, known_meta = self._complete_meta, self._item_event_meta
        for k in [k for k, item in enumerate(items) if item not in complete]:
            category = c.categories[events[k]]
            # One `institution` on an event naming several products cannot say whose it is.
            institution = c.institutions[events[k]] if spread[k] == 1 else None
            if not (category or institution):
                continue
            known = known_meta.get(items[k], (None, None))
            meta = (known[0] or category, known[1] or institution)
            known_meta[items[k]] = meta
            if None not in meta:
                complete.add(items[k])

    def _dismissed_before(self, pairs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per (event, product) pair: whether the customer dismissed the product at or after it
        (`WeightingConfig.dismiss_keep` then scales its weight)."""
        width = max(len(self._item_codes), 1)
        latest: dict[int, float] = {}
        for user, product_id, ts in self._dismissals:
            item = self._item_codes.get(product_id)
            if item is not None:
                key = user * width + item
                latest[key] = max(latest.get(key, -math.inf), ts)
        if not latest:
            return np.zeros(len(pairs["user"]), dtype=bool)
        keys = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
        times = np.fromiter(latest.values(), dtype=np.float64, count=len(latest))
        order = np.argsort(keys)
        keys, times = keys[order], times[order]
        pair_keys = pairs["user"] * width + pairs["item"]
        at = np.minimum(np.searchsorted(keys, pair_keys), len(keys) - 1)
        return (keys[at] == pair_keys) & (pairs["time"] <= times[at])

    def _add_search(self, user: int, c: InteractionColumns, row: int) -> None:
        self._counts["searches"] += 1
        category, ts = c.categories[row], float(c.timestamps[row])
        if category:
            code = self._search_categories.setdefault(category, len(self._search_categories))
            self._search_category_rows.append((user, code, ts))
        query = c.queries[row]
        if query:
            for term in query_terms(query):
                code = self._search_terms.setdefault(term, len(self._search_terms))
                self._search_term_rows.append((user, code, ts))

    def build(self, products: Sequence[Product], now: datetime | None = None) -> TrainingData:
        """The matrices for everything added so far plus the catalog (cold items included)."""
        config, feature_config = self._config, self._feature_config
        catalog = {product.id: product for product in products}
        item_codes = dict(self._item_codes)
        for product_id in catalog:
            item_codes.setdefault(product_id, len(item_codes))

        # Rows in id order: the same data gives the same matrices whatever the scan order.
        user_ids, user_rank = _sorted_codes(self._user_codes)
        item_ids, item_rank = _sorted_codes(item_codes)
        n_users, n_items = len(user_ids), len(item_ids)

        has_events = self._last_ts > -math.inf
        if now is None:
            now = datetime.fromtimestamp(self._last_ts, UTC) if has_events else datetime.now(UTC)
        reference_time = aware(now)
        reference = reference_time.timestamp()

        pairs = {k: _concatenate(chunks, _PAIR_DTYPES[k]) for k, chunks in self._pairs.items()}
        weights = event_weights(
            self._type_base[pairs["type"]],
            pairs["type"] == self._view_code,
            pairs["duration"],
            pairs["spread"],
            reference - pairs["time"],
            config,
        )
        weights = np.where(self._dismissed_before(pairs), weights * config.dismiss_keep, weights)
        rows = user_rank[pairs["user"]]
        cols = item_rank[pairs["item"]]
        matrix = sp.csr_matrix((weights, (rows, cols)), shape=(n_users, n_items))  # sums duplicates
        matrix.eliminate_zeros()  # entries decayed to nothing (underflow) are no interaction
        interactions = matrix.astype(np.float32).tocoo()

        item_meta, item_labels = _item_meta(self._item_event_meta, catalog, item_ids, item_rank)
        demographics = _latest_demographics(self._demographics, user_rank, feature_config)
        event_counts = np.bincount(
            user_rank[_concatenate(self._doc_users, np.int64)], minlength=n_users
        )
        decay = _Decay(reference, config.decay_half_life_days)
        user_blocks = [
            _demographic_block(demographics, n_users),
            *_engagement_blocks(matrix, item_labels, feature_config.max_engaged_per_user),
            _activity_block(event_counts, feature_config),
            _search_block(
                self._search_category_rows,
                self._search_categories,
                "search_category:",
                user_rank,
                decay,
                min_users=1,
                top_n=None,
            ),
            _search_block(
                self._search_term_rows,
                self._search_terms,
                "search_term:",
                user_rank,
                decay,
                min_users=feature_config.min_search_term_users,
                top_n=feature_config.max_search_terms_per_user,
            ),
        ]
        user_features, user_feature_names = _with_identity(
            user_blocks,
            np.diff(matrix.indptr) > 0,
            user_ids,
            user_identity_feature,
            feature_config.user_identity_weight,
        )
        item_side = [
            item_side_features(category, institution, catalog.get(item_id), feature_config)
            for item_id, category, institution in zip(item_ids, *item_labels, strict=True)
        ]
        item_degree = np.diff(matrix.tocsc().indptr)
        item_features, item_feature_names = _with_identity(
            [_one_hot_rows(item_side, "")],
            item_degree > 0,
            item_ids,
            item_identity_feature,
            feature_config.item_identity_weight,
        )

        window = (
            (
                datetime.fromtimestamp(self._first_ts, UTC),
                datetime.fromtimestamp(self._last_ts, UTC),
            )
            if has_events
            else (None, None)
        )
        counts = {
            **self._counts,
            "product_events": len(weights),
            "users": n_users,
            "items": n_items,
            "catalog_items": len(catalog),
            "cold_items": int(np.count_nonzero(item_degree == 0)),
            "interactions": int(interactions.nnz),
        }
        return _training_data(
            interactions,
            matrix,
            (user_ids, user_features, user_feature_names),
            (item_ids, item_features, item_feature_names),
            demographics,
            item_meta=item_meta,
            data_window=window,
            counts=counts,
            reference_time=reference_time,
            weighting=config,
            feature_config=feature_config,
        )


_PAIR_DTYPES = {
    "user": np.int64,
    "item": np.int64,
    "type": np.int16,
    "duration": np.float64,
    "spread": np.float64,
    "time": np.float64,
}


def _concatenate(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)


def _sorted_codes(codes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """Ids sorted, and code → row position."""
    ids = sorted(codes)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[np.fromiter((codes[i] for i in ids), dtype=np.int64, count=len(ids))] = np.arange(len(ids))
    return ids, rank


def _item_meta(
    item_event_meta: Mapping[int, tuple[str | None, str | None]],
    catalog: Mapping[str, Product],
    item_ids: list[str],
    item_rank: np.ndarray,
) -> tuple[dict[str, dict[str, str]], tuple[list[str], list[str]]]:
    """Category and institution per item row: the catalog's, else what events said, else ""."""
    from_events = {int(item_rank[code]): meta for code, meta in item_event_meta.items()}
    categories, institutions = [], []
    for row, item_id in enumerate(item_ids):
        product = catalog.get(item_id)
        if product is not None:
            category, institution = product.category, product.institution
        else:
            category, institution = from_events.get(row, (None, None))
        categories.append(category or "")
        institutions.append(institution or "")
    meta = {
        item_id: {"category": c, "institution": i}
        for item_id, c, i in zip(item_ids, categories, institutions, strict=True)
    }
    return meta, (categories, institutions)


def _latest_demographics(
    stored: Mapping[int, tuple[float, Any]], user_rank: np.ndarray, feature_config: FeatureConfig
) -> dict[int, dict[str, str]]:
    """Row → demographics with blank fields and attributes the model may not use dropped. There
    are few distinct combinations, so each is cleaned once and users with the same one share a
    dict."""
    fields = [name for name in DEMOGRAPHIC_FIELDS if feature_config.allows(name)]
    cleaned: dict[tuple[Any, ...], dict[str, str]] = {}
    by_row = {}
    for code, (_, raw) in stored.items():
        if not isinstance(raw, Mapping):
            continue
        values = tuple(v if isinstance(v, str) else None for v in map(raw.get, fields))
        clean = cleaned.get(values)
        if clean is None:
            clean = cleaned[values] = {
                k: v.strip() for k, v in zip(fields, values, strict=True) if v and v.strip()
            }
        if clean:
            by_row[int(user_rank[code])] = clean
    return by_row


_Block = tuple[sp.csr_matrix, list[str]]


def _demographic_block(demographics: Mapping[int, Mapping[str, str]], n_users: int) -> _Block:
    labels: list[list[str]] = [[]] * n_users
    names_of: dict[int, list[str]] = {}  # shared dicts → one name list each
    for row, demo in demographics.items():
        names = names_of.get(id(demo))
        if names is None:
            names = names_of[id(demo)] = list(demographic_features(demo))
        labels[row] = names
    return _one_hot_rows(labels, "")


def _engagement_blocks(
    matrix: sp.csr_matrix, item_labels: tuple[list[str], list[str]], top_n: int
) -> list[_Block]:
    """What each user engaged with most, in proportion to how much: interactions × item one-hot,
    each user's `top_n` strongest kept (every feature on a row costs LightFM time per update)."""
    blocks = []
    for prefix, labels in zip(
        ("engaged_category:", "engaged_institution:"), item_labels, strict=True
    ):
        one_hot, names = _one_hot_rows([[v] if v else [] for v in labels], prefix)
        engaged = _top_n_per_row(sp.csr_matrix(matrix @ one_hot), top_n)
        blocks.append((_row_normalised(engaged), names))
    return blocks


def _activity_block(event_counts: np.ndarray, feature_config: FeatureConfig) -> _Block:
    buckets = np.searchsorted(feature_config.activity_edges, event_counts, side="right")
    names = activity_features(feature_config)
    matrix = sp.csr_matrix(
        (np.ones(len(buckets)), buckets, np.arange(len(buckets) + 1)),
        shape=(len(buckets), len(names)),
    )
    return matrix, names


def _search_block(
    entries: list[tuple[int, int, float]],
    vocabulary: Mapping[str, int],
    prefix: str,
    user_rank: np.ndarray,
    decay: _Decay,
    *,
    min_users: int,
    top_n: int | None,
) -> _Block:
    """Decayed search interest per user and category/term, each user's row summing to 1."""
    table = np.array(entries, dtype=np.float64).reshape(-1, 3)
    users = user_rank[table[:, 0].astype(np.int64)]
    codes = table[:, 1].astype(np.int64)
    weights = decay(table[:, 2])
    names = sorted(vocabulary, key=vocabulary.__getitem__)
    counts = sp.csr_matrix((weights, (users, codes)), shape=(len(user_rank), len(names)))
    counts.eliminate_zeros()
    keep = np.flatnonzero(np.diff(counts.tocsc().indptr) >= min_users)
    counts = sp.csr_matrix(counts[:, keep])
    if top_n is not None:
        counts = _top_n_per_row(counts, top_n)
    return _row_normalised(counts), [prefix + names[k] for k in keep]


def _with_identity(
    blocks: Sequence[_Block],
    has_identity: np.ndarray,
    ids: Sequence[str],
    identity_name: Callable[[str], str],
    identity_weight: float,
) -> _Block:
    """[identity | side blocks], each row summing to 1 (or 0 when nothing is known).

    Only rows with training interactions get an identity feature: for anyone else it would be an
    embedding no gradient ever touched. With side features present the identity takes
    `identity_weight` of the row and the side features share the rest in proportion to their
    weights; each side block (demographics, engagement, …) weighs in with its own row sum."""
    side = sp.hstack([block for block, _ in blocks], format="csr", dtype=np.float64)
    side_sums = np.asarray(side.sum(axis=1)).ravel()
    has_side = side_sums > 0
    side_share = np.where(has_identity, 1.0 - identity_weight, 1.0)
    scale = np.divide(side_share, side_sums, out=np.zeros_like(side_sums), where=has_side)
    side = sp.csr_matrix(sp.diags(scale) @ side)

    identity_rows = np.flatnonzero(has_identity)
    identity = sp.csr_matrix(
        (
            np.where(has_side[identity_rows], identity_weight, 1.0),
            (identity_rows, np.arange(len(identity_rows))),
        ),
        shape=(len(has_identity), len(identity_rows)),
    )
    features = sp.hstack([identity, side], format="csr").astype(np.float32)
    features.eliminate_zeros()
    features.sort_indices()
    names = [identity_name(ids[row]) for row in identity_rows]
    names.extend(name for _, block_names in blocks for name in block_names)
    return features, names


@dataclass(frozen=True)
class _Decay:
    reference: float
    half_life_days: float

    def __call__(self, timestamps: np.ndarray) -> np.ndarray:
        return decay_factor(self.reference - timestamps, self.half_life_days)


def _top_n_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Each row's n largest entries (ties: lower column first); the rest dropped."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((-matrix.data, rows))  # by row, then largest first, stable
    rank = np.arange(len(order)) - matrix.indptr[rows[order]]
    keep = order[rank < n]
    return sp.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape
    )


def _one_hot_rows(labels_per_row: Sequence[Sequence[str]], prefix: str) -> _Block:
    """Rows of labels → 0/1 csr matrix and its column names (prefix + label, first-seen order)."""
    vocabulary: dict[str, int] = {}
    indptr = np.zeros(len(labels_per_row) + 1, dtype=np.int64)
    indices: list[int] = []
    for row, labels in enumerate(labels_per_row):
        for label in labels:
            indices.append(vocabulary.setdefault(label, len(vocabulary)))
        indptr[row + 1] = len(indices)
    matrix = sp.csr_matrix(
        (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(labels_per_row), len(vocabulary)),
    )
    matrix.sum_duplicates()
    return matrix, [prefix + label for label in vocabulary]


def _row_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)


def _segment_popularity(
    matrix: sp.csr_matrix,
    demographics: Mapping[int, Mapping[str, str]],
    feature_config: FeatureConfig,
) -> dict[str, np.ndarray]:
    """Per demographic value with enough users, the decayed weight per item among those users."""
    members: dict[str, list[int]] = {}
    for row, demo in demographics.items():
        for key, value in demo.items():
            members.setdefault(segment_key(key, value), []).append(row)
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
    scores = (membership @ matrix).toarray().astype(np.float32)
    return {key: np.ascontiguousarray(scores[i]) for i, key in enumerate(eligible)}
