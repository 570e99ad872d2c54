"""Datasets for the evaluation harness: distinct (user, item) pairs plus what a model may train on.

A dataset is a table of pairs (the unit a protocol splits) and `train_view(train_mask, features)`,
which builds what a model sees from the training pairs only, so nothing a model learns from
(behavioural features included) ever comes from a test pair. The view's `data` is the pipeline's
`TrainingData`, exactly what `finverse-reco train` hands to `model.training.train`.

- `load_movielens_100k(dir)`: `u.data` (every rating a positive), `u.user` demographics (age band,
  gender, occupation, first zip digit) and `u.item` genres plus release decade.
- `load_interactions_csv(path, user_features=, item_features=)`: columns `user_id,item_id` and
  optionally `weight` (> 0, summed per pair) and `timestamp` (epoch seconds or ISO 8601); feature
  files have an id column (`user_id` / `item_id`) and categorical columns, each `column:value`.
- `demo_dataset(seed)`: the synthetic FinVerse world, trained through the real pipeline.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.events import touched_products
from finverse_reco.pipeline import (
    FeatureConfig,
    TrainingData,
    WeightingConfig,
    build_labelled_training_data,
    build_training_data,
)
from finverse_reco.pipeline.features import demographic_features
from finverse_reco.pipeline.idmap import IdMap

if TYPE_CHECKING:
    from finverse_reco.demo.world import DemoWorld

# u.user age bands (lower bounds), as in the MovieLens-1M documentation.
MOVIELENS_AGE_EDGES = (18, 25, 35, 45, 50, 56)


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message says which and where."""


@dataclass(frozen=True)
class TrainView:
    """What a model may learn from the training pairs.

    `data`: the pipeline's training data (its own rows: the users with training pairs, every
    item), as `train` gets it. `interactions`: the same pairs in the dataset's rows, for the
    baselines. `user_rows` / `item_rows` map a dataset row to its row in `data` (-1: absent, a
    user the service would only know by the labels they send)."""

    data: TrainingData
    interactions: sp.csr_matrix  # n_users × n_items (dataset rows), weight > 0 for training pairs
    user_rows: np.ndarray
    item_rows: np.ndarray

    @classmethod
    def aligned(
        cls,
        data: TrainingData,
        interactions: sp.csr_matrix,
        user_ids: IdMap,
        item_ids: IdMap,
    ) -> TrainView:
        return cls(
            data, interactions, _rows_of(user_ids, data.users), _rows_of(item_ids, data.items)
        )


@dataclass(frozen=True)
class Dataset:
    """Distinct (user, item) pairs, rows into `user_ids` / `item_ids` (both sorted), and each
    user's categorical labels (demographics: `{"age_group": "25-34"}`), which the service would
    know about a user without history."""

    name: str
    user_ids: IdMap
    item_ids: IdMap
    users: np.ndarray  # int64 per pair
    items: np.ndarray  # int64 per pair
    weights: np.ndarray  # float32 per pair, > 0
    timestamps: np.ndarray  # float64 per pair (first touch, epoch seconds); NaN when unknown
    user_labels: tuple[Mapping[str, str], ...]
    build_view: Callable[[np.ndarray, FeatureConfig], TrainView] = field(repr=False)
    # Per item row, the categories its exposure counts for (the fairness report): a product's
    # category, a film's genres; empty when unknown.
    item_categories: tuple[tuple[str, ...], ...] = ()

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_view(self, train: np.ndarray, features: FeatureConfig | None = None) -> TrainView:
        """What a model may learn from the pairs where `train` (bool per pair) is true, the
        feature rows mixed as `features` says."""
        if train.shape != self.users.shape or train.dtype != np.bool_:
            raise ValueError("train must be a bool mask with one entry per pair")
        return self.build_view(train, features or FeatureConfig())

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
    user_labels: Mapping[str, Mapping[str, str]],
    item_labels: Mapping[str, Sequence[str]],
    item_categories: Mapping[str, Sequence[str]] | None = None,
) -> Dataset:
    """Pairs from raw rows (duplicates summed, earliest timestamp kept) with static labels: a
    user's columns (`{"age_group": "25-34"}`), an item's feature names (`genre:7`) and the
    categories its exposure counts for (default: its `category:` labels)."""
    user_ids = IdMap(sorted(set(user_ids) | set(raw_users)))
    item_ids = IdMap(sorted(set(item_ids) | set(raw_items)))
    if not raw_users:
        raise DatasetError(f"{name}: no interactions")
    users = user_ids.rows(raw_users)
    items = item_ids.rows(raw_items)
    keys = users * len(item_ids) + items
    unique, inverse = np.unique(keys, return_inverse=True)
    weights = np.bincount(inverse, weights=raw_weights).astype(np.float32)
    timestamps = np.full(len(unique), np.inf)
    np.minimum.at(timestamps, inverse, np.where(np.isnan(raw_timestamps), np.inf, raw_timestamps))
    timestamps[np.isinf(timestamps)] = np.nan
    dataset_users, dataset_items = unique // len(item_ids), unique % len(item_ids)
    labels = tuple(dict(user_labels.get(u, {})) for u in user_ids)
    item_names = [list(item_labels.get(v, ())) for v in item_ids]

    def build_view(train: np.ndarray, features: FeatureConfig) -> TrainView:
        interactions = sp.csr_matrix(
            (weights[train], (dataset_users[train], dataset_items[train])),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float32,
        )
        # As the service would: only users with training pairs are in the training data.
        trained = np.flatnonzero(np.diff(interactions.indptr) > 0)
        data = build_labelled_training_data(
            interactions[trained],
            user_ids.ids_of(trained),
            item_ids.ids,
            [labels[u] for u in trained],
            item_names,
            feature_config=features,
        )
        return TrainView.aligned(data, interactions, user_ids, item_ids)

    return Dataset(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        users=dataset_users.astype(np.int64),
        items=dataset_items.astype(np.int64),
        weights=weights,
        timestamps=timestamps,
        user_labels=labels,
        build_view=build_view,
        item_categories=tuple(
            tuple(
                item_categories.get(v, ())
                if item_categories is not None
                else [
                    n.split(":", 1)[1] for n in item_labels.get(v, ()) if n.startswith("category:")
                ]
            )
            for v in item_ids
        ),
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
        user_labels[user_id] = {
            "age_band": str(band),
            "gender": gender,
            "occupation": occupation,
            "zip_region": region,
        }
    genre_names = _genre_names(directory)
    item_labels, item_genres = {}, {}
    for fields in _read_delimited(directory / "u.item", "|", 24):
        year = fields[2][-4:]
        decade = f"decade:{int(year) // 10 * 10}" if year.isdigit() else "decade:unknown"
        flags = [g for g, flag in enumerate(fields[5:24]) if flag == "1"]
        item_labels[fields[0]] = [*(f"genre:{g}" for g in flags), decade]
        item_genres[fields[0]] = [genre_names.get(g, str(g)) for g in flags]
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
        item_genres,
    )


def _genre_names(directory: Path) -> dict[int, str]:
    """`u.genre` (name|index); without it genres are known by their index."""
    if not (directory / "u.genre").is_file():
        return {}
    return {int(index): name for name, index in _read_delimited(directory / "u.genre", "|", 2)}


def load_interactions_csv(
    interactions: Path,
    *,
    user_features: Path | None = None,
    item_features: Path | None = None,
) -> Dataset:
    """An interactions CSV with optional user and item feature CSVs (see the module docstring)."""
    header, rows = _read_csv(interactions, required=("user_id", "item_id"))
    users = [r.get("user_id", "") for r in rows]
    items = [r.get("item_id", "") for r in rows]
    for line, (user, item) in enumerate(zip(users, items, strict=True), start=2):
        if not user or not item:
            raise DatasetError(f"{interactions}:{line}: empty user_id or item_id")
    weights = np.ones(len(rows))
    if "weight" in header:
        for line, row in enumerate(rows, start=2):
            try:
                weights[line - 2] = float(row.get("weight", ""))
            except ValueError:
                raise DatasetError(
                    f"{interactions}:{line}: weight {row.get('weight', '')!r} is not a number"
                ) from None
        if not (np.isfinite(weights) & (weights > 0)).all():
            raise DatasetError(f"{interactions}: every weight must be a finite number > 0")
    timestamps = np.full(len(rows), np.nan)
    if "timestamp" in header:
        for line, row in enumerate(rows, start=2):
            timestamps[line - 2] = _parse_time(row.get("timestamp", ""), f"{interactions}:{line}")
    return tabular_dataset(
        interactions.stem,
        [],
        [],
        users,
        items,
        weights,
        timestamps,
        _read_feature_csv(user_features, "user_id") if user_features else {},
        {
            item: [f"{column}:{value}" for column, value in columns.items()]
            for item, columns in (
                _read_feature_csv(item_features, "item_id") if item_features else {}
            ).items()
        },
    )


# --- the demo world, through the real pipeline -------------------------------------------------


def demo_dataset(
    seed: int = 42,
    *,
    n_users: int = 2000,
    n_products: int = 240,
    n_events: int = 100_000,
    weighting: WeightingConfig | None = None,
    world: DemoWorld | None = None,
) -> Dataset:
    """The synthetic FinVerse world. A pair is (user, product touched by any weighted event); a
    view trains the pipeline on the events of training pairs only, so behavioural features
    (categories engaged with, activity, searches) never see a test pair. Searches name no
    product: they stay with their user unless the whole user is held out. With every pair in
    training, a view's data is what `finverse-reco train` builds from the same events. A user's
    labels are the demographics their events carry. `world`: an already generated world (the
    seed and sizes are then its own)."""
    from finverse_reco.demo import generate_world

    if world is None:
        world = generate_world(seed, n_users=n_users, n_products=n_products, n_events=n_events)
    catalog = {product.id: product for product in world.products}
    weighting = weighting or WeightingConfig()
    weighted_types = {t for t, w in weighting.type_weights.items() if w > 0}
    user_ids = IdMap(sorted({u.id for u in world.users} | {e["user_id"] for e in world.events}))
    item_ids = IdMap(
        sorted({p.id for p in world.products} | _event_products(world.events, weighted_types))
    )
    user_row, item_row = user_ids.row, item_ids.row

    event_pairs: list[list[int]] = []  # per event: the pair keys it touches
    first_seen: dict[int, float] = {}
    labels: list[dict[str, str]] = [{} for _ in user_ids]
    for event in world.events:
        user = user_row(event["user_id"])
        data = event.get("data") or {}
        if data.get("userDemographics"):
            labels[user] = {
                name.split(":", 1)[0]: name.split(":", 1)[1]
                for name in demographic_features(data["userDemographics"])
            }
        keys = []
        if event["type"] in weighted_types:
            ts = datetime.fromisoformat(event["timestamp"]).timestamp()
            for product in touched_products(data.get("productId"), data.get("productIDs")):
                key = user * len(item_ids) + item_row(product)
                first_seen.setdefault(key, ts)
                keys.append(key)
        event_pairs.append(keys)
    pair_keys = np.array(sorted(first_seen), dtype=np.int64)
    pair_position = {int(k): i for i, k in enumerate(pair_keys)}
    event_user = user_ids.rows(e["user_id"] for e in world.events)

    has_pairs = np.zeros(len(user_ids), dtype=bool)
    has_pairs[pair_keys // len(item_ids)] = True

    def build_view(train: np.ndarray, features: FeatureConfig) -> TrainView:
        # A user's events without a product go with them: into training unless all their pairs
        # are held out (a user with no pair at all, searches only, is always there).
        keeps_user = ~has_pairs
        keeps_user[pair_keys[train] // len(item_ids)] = True
        chosen = [
            event
            for event, keys, user in zip(world.events, event_pairs, event_user, strict=True)
            if (keys and all(train[pair_position[k]] for k in keys))
            or (not keys and keeps_user[user])
        ]
        data = build_training_data([chosen], world.products, weighting, feature_config=features)
        to_users = _placement(data.users.ids, user_ids)
        to_items = _placement(data.items.ids, item_ids)
        interactions = sp.csr_matrix(to_users @ sp.csr_matrix(data.interactions) @ to_items.T)
        return TrainView.aligned(data, interactions, user_ids, item_ids)

    return Dataset(
        name="demo",
        user_ids=user_ids,
        item_ids=item_ids,
        users=pair_keys // len(item_ids),
        items=pair_keys % len(item_ids),
        weights=np.ones(len(pair_keys), dtype=np.float32),
        timestamps=np.array([first_seen[int(k)] for k in pair_keys]),
        user_labels=tuple(labels),
        build_view=build_view,
        item_categories=tuple(
            (catalog[item].category,) if item in catalog and catalog[item].category else ()
            for item in item_ids
        ),
    )


def _placement(ids: Sequence[str], all_ids: IdMap) -> sp.csr_matrix:
    """len(all_ids) × len(ids) 0/1 matrix putting row r of an `ids`-indexed matrix at its id's row."""
    rows = all_ids.rows(ids)
    return sp.csr_matrix(
        (np.ones(len(ids), np.float32), (rows, np.arange(len(ids)))), shape=(len(all_ids), len(ids))
    )


def _rows_of(ids: IdMap, data_ids: IdMap) -> np.ndarray:
    """Per id, its row in `data_ids` (-1 when absent)."""
    return np.fromiter(
        (-1 if (r := data_ids.row(i)) is None else r for i in ids), np.int64, len(ids)
    )


def _event_products(events: Sequence[Mapping[str, Any]], weighted: set[str]) -> set[str]:
    datas = [e.get("data") or {} for e in events if e["type"] in weighted]
    return {
        product
        for data in datas
        for product in touched_products(data.get("productId"), data.get("productIDs"))
    }


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
    """Header and rows of a UTF-8 CSV (a byte-order mark is fine); a clear error for a missing,
    empty or non-UTF-8 file, a duplicate or missing column, or a row with more fields."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            raise DatasetError(f"{path}: empty file (expected a header: {', '.join(required)}, …)")
        duplicates = sorted({h for h in header if h and header.count(h) > 1})
        if duplicates:
            raise DatasetError(f"{path}: duplicate column(s) {', '.join(duplicates)} in the header")
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {header}")
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(header):
                raise DatasetError(
                    f"{path}:{reader.line_num}: {len(fields)} fields, the header has {len(header)}"
                )
            rows.append({k: v.strip() for k, v in zip(header, fields, strict=False) if k})
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: {exc}") from None
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return header, rows


def _read_feature_csv(path: Path, id_column: str) -> dict[str, dict[str, str]]:
    """id → {column: value} (blank values left out); an id may appear once."""
    header, rows = _read_csv(path, required=(id_column,))
    columns = [c for c in header if c and c != id_column]
    features: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        key = row.get(id_column, "")
        if not key:
            raise DatasetError(f"{path}:{line}: empty {id_column}")
        if key in features:
            raise DatasetError(f"{path}:{line}: {id_column} {key!r} appears twice")
        features[key] = {c: row[c] for c in columns if row.get(c)}
    return features


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
