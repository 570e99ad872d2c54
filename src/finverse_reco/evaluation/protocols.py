"""How pairs are split into train and test. Every split is a pure function of the pairs and a seed.

- `ms-recommenders`: per user (ascending row), a `default_rng(seed)` permutation of the user's
  pairs, the first int(0.75·n) to train (as the Microsoft Recommenders stratified split does).
- `holdout`: the same with 80/20 (the demo's default: 20% of each user's interactions held out).
- `time`: per user, the last 20% of their pairs by first-touch time go to test.
- `cold-user`: 20% of users (a `default_rng(seed)` permutation) held out entirely.
- `cold-item`: 20% of items with pairs held out entirely; test users rank only the held-out items.

The validation split that chooses hyperparameters is the same protocol, with the same fractions,
applied to the training pairs alone with seed + 1000 (under `ms-recommenders`, 25% of each user's
training pairs; under `cold-user`, 20% of the training users), so the choice never sees a test
pair and is made in the test's conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("ms-recommenders", "holdout", "time", "cold-user", "cold-item")
VALIDATION_SEED_OFFSET = 1000
_TEST_FRACTION = {
    "ms-recommenders": 0.25,
    "holdout": 0.2,
    "time": 0.2,
    "cold-user": 0.2,
    "cold-item": 0.2,
}


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # bool per pair
    test: np.ndarray  # bool per pair
    candidates: np.ndarray | None  # item rows a test user ranks; None: every item


def split_pairs(
    protocol: str,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    seed: int,
    *,
    within: np.ndarray | None = None,
    fraction: float | None = None,
) -> Split:
    """Split the pairs (restricted to `within`, a bool mask, if given) by `protocol`."""
    if protocol not in _TEST_FRACTION:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    fraction = _TEST_FRACTION[protocol] if fraction is None else fraction
    within = np.ones(len(users), dtype=bool) if within is None else within
    rng = np.random.default_rng(seed)
    test = np.zeros(len(users), dtype=bool)
    candidates = None
    if protocol in ("ms-recommenders", "holdout"):
        test[per_user_random_tail(users, within, 1.0 - fraction, rng)] = True
    elif protocol == "time":
        if np.isnan(timestamps[within]).any():
            raise ValueError("the time protocol needs a timestamp on every interaction")
        test[per_user_latest(users, timestamps, within, fraction)] = True
    elif protocol == "cold-user":
        held = _held_out_entities(users[within], fraction, rng)
        test = within & np.isin(users, held)
    else:
        held = _held_out_entities(items[within], fraction, rng)
        test = within & np.isin(items, held)
        candidates = held
    return Split(train=within & ~test, test=test, candidates=candidates)


def validation_split(protocol: str, split: Split, users, items, timestamps, seed: int) -> Split:
    """The same protocol carved from `split.train` alone, for choosing hyperparameters."""
    return split_pairs(
        protocol,
        users,
        items,
        timestamps,
        seed + VALIDATION_SEED_OFFSET,
        within=split.train,
    )


def per_user_random_tail(
    users: np.ndarray, within: np.ndarray, train_ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """Pair positions held out: per user in ascending order, shuffle the user's pairs (in their
    original order) with `rng` and hold out all but the first int(train_ratio·n)."""
    positions = np.flatnonzero(within)
    order = positions[np.argsort(users[positions], kind="stable")]
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    held = []
    for group in np.split(order, bounds):
        if len(group) == 0:
            continue
        shuffled = group[rng.permutation(len(group))]
        held.append(shuffled[int(train_ratio * len(group)) :])
    return np.concatenate(held) if held else np.zeros(0, dtype=np.int64)


def per_user_latest(
    users: np.ndarray, timestamps: np.ndarray, within: np.ndarray, fraction: float
) -> np.ndarray:
    """Pair positions held out: each user's latest int(fraction·n) pairs (ties: later position)."""
    positions = np.flatnonzero(within)
    order = positions[np.lexsort((positions, timestamps[positions], users[positions]))]
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    held = []
    for group in np.split(order, bounds):
        n_test = int(fraction * len(group))
        if n_test:
            held.append(group[len(group) - n_test :])
    return np.concatenate(held) if held else np.zeros(0, dtype=np.int64)


def _held_out_entities(
    entity_per_pair: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    entities = np.unique(entity_per_pair)
    chosen = entities[rng.permutation(len(entities))[: int(fraction * len(entities))]]
    return np.sort(chosen)
