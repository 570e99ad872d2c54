"""Datasets for the evaluation harness: distinct (user, item) pairs plus what a model may train on.

A dataset is a table of pairs (the unit a protocol splits) and `train_view(train_mask)`, which
builds the matrices a model sees from the training pairs only, so nothing a model learns from
(behavioural features included) ever comes from a test pair.

- `load_movielens_100k(dir)`: `u.data` (every rating a positive), `u.user` demographics (age band,
  gender, occupation, first zip digit) and `u.item` genres plus release decade.
- `load_interactions_csv(path, user_features=, item_features=)`: columns `user_id,item_id` and
  optionally `weight` (> 0, summed per pair) and `timestamp` (epoch seconds or ISO 8601); feature
  files have an id column (`user_id` / `item_id`) and categorical columns, each `column:value`.
- `demo_dataset(seed)`: the synthetic FinVerse world, trained through the real pipeline.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.events import touched_products
from finverse_reco.pipeline import WeightingConfig, build_training_data
from finverse_reco.pipeline.features import (
    USER_IDENTITY_PREFIX,
    demographic_features,
    item_identity_feature,
)

# u.user age bands (lower bounds), as in the MovieLens-1M documentation.
MOVIELENS_AGE_EDGES = (18, 25, 35, 45, 50, 56)


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message says which and where."""


@dataclass(frozen=True)
class TrainView:
    """What a model may learn from: the training pairs and the features of every user and item.

    Identity and side features are kept apart so a model decides how much each weighs.
    `user_identity[u]` is one-hot for users with training pairs and empty for anyone else (an
    identity nobody trained would be noise); side rows sum to 1, or 0 when nothing is known."""

    interactions: sp.csr_matrix  # n_users × n_items, weight > 0 for training pairs
    user_identity: sp.csr_matrix
    user_side: sp.csr_matrix
    item_identity: sp.csr_matrix
    item_side: sp.csr_matrix
    user_side_names: tuple[str, ...] = ()
    item_side_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """Distinct (user, item) pairs, rows into `user_ids` / `item_ids` (both sorted)."""

    name: str
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    users: np.ndarray  # int64 per pair
    items: np.ndarray  # int64 per pair
    weights: np.ndarray  # float32 per pair, > 0
    timestamps: np.ndarray  # float64 per pair (first touch, epoch seconds); NaN when unknown
    build_view: Callable[[np.ndarray], TrainView] = field(repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_view(self, train: np.ndarray) -> TrainView:
        """The matrices built from the pairs where `train` (bool per pair) is true."""
        if train.shape != self.users.shape or train.dtype != np.bool_:
            raise ValueError("train must be a bool mask with one entry per pair")
        return self.build_view(train)

    def pair_matrix(self, mask: np.ndarray) -> sp.csr_matrix:
        """n_users × n_items csr of the masked pairs' weights."""
        return sp.csr_matrix(
            (self.weights[mask], (self.users[mask], self.items[mask])),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )


# --- tabular datasets (MovieLens, CSV) ---------------------------------------------------------


def tabular_dataset(
    name: str,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    raw_users: Sequence[str],
    raw_items: Sequence[str],
    raw_weights: np.ndarray,
    raw_timestamps: np.ndarray,
    user_labels: Mapping[str, Sequence[str]],
    item_labels: Mapping[str, Sequence[str]],
) -> Dataset:
    """Pairs from raw rows (duplicates summed, earliest timestamp kept) with static side features."""
    user_ids = tuple(sorted(set(user_ids) | set(raw_users)))
    item_ids = tuple(sorted(set(item_ids) | set(raw_items)))
    user_row = {u: i for i, u in enumerate(user_ids)}
    item_row = {v: i for i, v in enumerate(item_ids)}
    users = np.fromiter((user_row[u] for u in raw_users), np.int64, len(raw_users))
    items = np.fromiter((item_row[v] for v in raw_items), np.int64, len(raw_items))
    keys = users * len(item_ids) + items
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse, weights=raw_weights).astype(np.float32)
    timestamps = np.full(len(unique), np.inf)
    np.minimum.at(timestamps, inverse, np.where(np.isnan(raw_timestamps), np.inf, raw_timestamps))
    timestamps[np.isinf(timestamps)] = np.nan
    user_side, user_names = one_hot_labels([user_labels.get(u, ()) for u in user_ids])
    item_side, item_names = one_hot_labels([item_labels.get(v, ()) for v in item_ids])
    dataset_users, dataset_items = unique // len(item_ids), unique % len(item_ids)

    def build_view(train: np.ndarray) -> TrainView:
        interactions = sp.csr_matrix(
            (weights[train], (dataset_users[train], dataset_items[train])),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float32,
        )
        return train_view(interactions, user_side, item_side, user_names, item_names)

    return Dataset(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        users=dataset_users.astype(np.int64),
        items=dataset_items.astype(np.int64),
        weights=weights,
        timestamps=timestamps,
        build_view=build_view,
    )


def load_movielens_100k(directory: Path) -> Dataset:
    """MovieLens-100K from its extracted directory (`u.data`, `u.user`, `u.item`)."""
    directory = Path(directory)
    rows = _read_delimited(directory / "u.data", "\t", 4)
    user_labels = {}
    for line, fields in enumerate(_read_delimited(directory / "u.user", "|", 5), start=1):
        user_id, age, gender, occupation, zip_code = fields[:5]
        if not age.isdigit():
            raise DatasetError(f"{directory / 'u.user'}:{line}: age {age!r} is not a number")
        band = sum(int(age) >= edge for edge in MOVIELENS_AGE_EDGES)
        region = zip_code[0] if zip_code[:1].isdigit() else "other"
        user_labels[user_id] = [
            f"age_band:{band}",
            f"gender:{gender}",
            f"occupation:{occupation}",
            f"zip_region:{region}",
        ]
    item_labels = {}
    for fields in _read_delimited(directory / "u.item", "|", 24):
        year = fields[2][-4:]
        decade = f"decade:{int(year) // 10 * 10}" if year.isdigit() else "decade:unknown"
        genres = [f"genre:{g}" for g, flag in enumerate(fields[5:24]) if flag == "1"]
        item_labels[fields[0]] = [*genres, decade]
    try:
        timestamps = np.array([float(r[3]) for r in rows])
    except ValueError as exc:
        raise DatasetError(f"{directory / 'u.data'}: bad timestamp ({exc})") from None
    return tabular_dataset(
        "movielens-100k",
        list(user_labels),
        list(item_labels),
        [r[0] for r in rows],
        [r[1] for r in rows],
        np.ones(len(rows)),  # every rating is a positive, as in the Microsoft Recommenders runs
        timestamps,
        user_labels,
        item_labels,
    )


def load_interactions_csv(
    interactions: Path,
    *,
    user_features: Path | None = None,
    item_features: Path | None = None,
) -> Dataset:
    """An interactions CSV with optional user and item feature CSVs (see the module docstring)."""
    header, rows = _read_csv(interactions, required=("user_id", "item_id"))
    users = [r["user_id"] for r in rows]
    items = [r["item_id"] for r in rows]
    for line, (user, item) in enumerate(zip(users, items, strict=True), start=2):
        if not user or not item:
            raise DatasetError(f"{interactions}:{line}: empty user_id or item_id")
    weights = np.ones(len(rows))
    if "weight" in header:
        for line, row in enumerate(rows, start=2):
            try:
                weights[line - 2] = float(row["weight"])
            except ValueError:
                raise DatasetError(f"{interactions}:{line}: weight {row['weight']!r}") from None
        if not (np.isfinite(weights) & (weights > 0)).all():
            raise DatasetError(f"{interactions}: every weight must be a finite number > 0")
    timestamps = np.full(len(rows), np.nan)
    if "timestamp" in header:
        for line, row in enumerate(rows, start=2):
            timestamps[line - 2] = _parse_time(row["timestamp"], f"{interactions}:{line}")
    return tabular_dataset(
        interactions.stem,
        [],
        [],
        users,
        items,
        weights,
        timestamps,
        _read_feature_csv(user_features, "user_id") if user_features else {},
        _read_feature_csv(item_features, "item_id") if item_features else {},
    )


# --- the demo world, through the real pipeline -------------------------------------------------


def demo_dataset(
    seed: int = 42, *, n_users: int = 2000, n_products: int = 240, n_events: int = 100_000
) -> Dataset:
    """The synthetic FinVerse world. A pair is (user, product touched by any weighted event); a
    view trains the pipeline on the events of training pairs only, so behavioural features
    (categories engaged with, activity, searches) never see a test pair. Searches name no
    product: they stay with their user unless the whole user is held out."""
    from finverse_reco.demo import generate_world

    world = generate_world(seed, n_users=n_users, n_products=n_products, n_events=n_events)
    weighting = WeightingConfig()
    weighted_types = {t for t, w in weighting.type_weights.items() if w > 0}
    user_ids = tuple(sorted({u.id for u in world.users} | {e["user_id"] for e in world.events}))
    item_ids = tuple(
        sorted({p.id for p in world.products} | _event_products(world.events, weighted_types))
    )
    user_row = {u: i for i, u in enumerate(user_ids)}
    item_row = {v: i for i, v in enumerate(item_ids)}

    event_pairs: list[list[int]] = []  # per event: the pair keys it touches
    first_seen: dict[int, float] = {}
    demographics: dict[int, Mapping[str, Any]] = {}
    for event in world.events:
        user = user_row[event["user_id"]]
        data = event.get("data") or {}
        if data.get("userDemographics"):
            demographics[user] = data["userDemographics"]
        keys = []
        if event["type"] in weighted_types:
            ts = datetime.fromisoformat(event["timestamp"]).timestamp()
            for product in touched_products(data.get("productId"), data.get("productIDs")):
                key = user * len(item_ids) + item_row[product]
                first_seen.setdefault(key, ts)
                keys.append(key)
        event_pairs.append(keys)
    pair_keys = np.array(sorted(first_seen), dtype=np.int64)
    pair_position = {int(k): i for i, k in enumerate(pair_keys)}
    event_user = np.array([user_row[e["user_id"]] for e in world.events], dtype=np.int64)

    def build_view(train: np.ndarray) -> TrainView:
        train_users = np.zeros(len(user_ids), dtype=bool)
        train_users[pair_keys[train] // len(item_ids)] = True
        chosen = [
            event
            for event, keys, user in zip(world.events, event_pairs, event_user, strict=True)
            if (keys and all(train[pair_position[k]] for k in keys))
            or (not keys and train_users[user])
        ]
        data = build_training_data([chosen], world.products, weighting)
        return _view_from_pipeline(data, user_ids, item_ids, demographics)

    return Dataset(
        name="demo",
        user_ids=user_ids,
        item_ids=item_ids,
        users=pair_keys // len(item_ids),
        items=pair_keys % len(item_ids),
        weights=np.ones(len(pair_keys), dtype=np.float32),
        timestamps=np.array([first_seen[int(k)] for k in pair_keys]),
        build_view=build_view,
    )


def _view_from_pipeline(
    data: Any,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    demographics: Mapping[int, Mapping[str, Any]],
) -> TrainView:
    """The pipeline's matrices moved to the dataset's rows, identity and side split apart.
    Users the pipeline never saw (held out entirely) get their demographics as side features:
    what the service knows about a new user who sends them."""
    to_users = _placement(data.users.ids, user_ids)
    to_items = _placement(data.items.ids, item_ids)
    interactions = sp.csr_matrix(to_users @ sp.csr_matrix(data.interactions) @ to_items.T)

    user_side_cols = np.flatnonzero(
        [not n.startswith(USER_IDENTITY_PREFIX) for n in data.user_feature_names]
    )
    user_side_names = data.user_feature_names.ids_of(user_side_cols)
    user_side = to_users @ sp.csr_matrix(data.user_features)[:, user_side_cols]
    known = np.asarray(to_users.sum(axis=1)).ravel() > 0
    column = {name: col for col, name in enumerate(user_side_names)}
    cold = [
        (row, column[name])
        for row in np.flatnonzero(~known)
        for name in demographic_features(demographics.get(int(row)))
        if name in column
    ]
    cold_rows, cold_cols = zip(*cold, strict=True) if cold else ((), ())
    user_side = user_side + sp.csr_matrix(
        (np.ones(len(cold_rows), np.float32), (cold_rows, cold_cols)), shape=user_side.shape
    )

    item_identity_names = {item_identity_feature(i) for i in data.items}
    item_side_cols = np.flatnonzero([n not in item_identity_names for n in data.item_feature_names])
    item_side = to_items @ sp.csr_matrix(data.item_features)[:, item_side_cols]
    return train_view(
        interactions,
        user_side,
        item_side,
        user_side_names,
        data.item_feature_names.ids_of(item_side_cols),
    )


def _placement(ids: Sequence[str], all_ids: Sequence[str]) -> sp.csr_matrix:
    """len(all_ids) × len(ids) 0/1 matrix putting row r of an `ids`-indexed matrix at its id's row."""
    position = {value: row for row, value in enumerate(all_ids)}
    rows = np.fromiter((position[i] for i in ids), np.int64, len(ids))
    return sp.csr_matrix(
        (np.ones(len(ids), np.float32), (rows, np.arange(len(ids)))), shape=(len(all_ids), len(ids))
    )


def _event_products(events: Sequence[Mapping[str, Any]], weighted: set[str]) -> set[str]:
    datas = [e.get("data") or {} for e in events if e["type"] in weighted]
    return {
        product
        for data in datas
        for product in touched_products(data.get("productId"), data.get("productIDs"))
    }


# --- matrices ----------------------------------------------------------------------------------


def one_hot_labels(labels_per_row: Sequence[Sequence[str]]) -> tuple[sp.csr_matrix, list[str]]:
    """Rows of labels → 0/1 csr matrix, columns the sorted distinct labels."""
    names = sorted({label for labels in labels_per_row for label in labels})
    column = {name: col for col, name in enumerate(names)}
    rows = [row for row, labels in enumerate(labels_per_row) for _ in set(labels)]
    cols = [column[label] for labels in labels_per_row for label in set(labels)]
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(labels_per_row), len(names))
    )
    return matrix, names


def identity_rows(has_identity: np.ndarray) -> sp.csr_matrix:
    """n × n one-hot rows for the flagged entities, empty rows for the rest."""
    rows = np.flatnonzero(has_identity)
    n = len(has_identity)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, rows)), shape=(n, n))


def row_normalised(matrix: sp.spmatrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float32)


# --- file reading ------------------------------------------------------------------------------


def _read_delimited(path: Path, delimiter: str, min_fields: int) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: not found (expected the extracted MovieLens-100K files)")
    rows = []
    with path.open(encoding="latin-1") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split(delimiter)
            if len(fields) < min_fields:
                raise DatasetError(
                    f"{path}:{line_number}: {len(fields)} fields, expected {min_fields}"
                )
            rows.append(fields)
    return rows


def _read_csv(path: Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {header}")
        reader.fieldnames = header
        rows = [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return header, rows


def _read_feature_csv(path: Path, id_column: str) -> dict[str, list[str]]:
    header, rows = _read_csv(path, required=(id_column,))
    columns = [c for c in header if c != id_column]
    return {
        row[id_column]: [f"{c}:{row[c]}" for c in columns if row.get(c)]
        for row in rows
        if row[id_column]
    }


def _parse_time(text: str, where: str) -> float:
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DatasetError(
            f"{where}: timestamp {text!r} is neither epoch seconds nor ISO 8601"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def train_view(
    interactions: sp.csr_matrix,
    user_side: sp.spmatrix,
    item_side: sp.spmatrix,
    user_side_names: Sequence[str],
    item_side_names: Sequence[str],
) -> TrainView:
    """Users and items with training pairs keep an identity feature; side features row-normalised."""
    return TrainView(
        interactions=interactions,
        user_identity=identity_rows(np.diff(interactions.indptr) > 0),
        user_side=row_normalised(user_side),
        item_identity=identity_rows(np.diff(interactions.tocsc().indptr) > 0),
        item_side=row_normalised(item_side),
        user_side_names=tuple(user_side_names),
        item_side_names=tuple(item_side_names),
    )
