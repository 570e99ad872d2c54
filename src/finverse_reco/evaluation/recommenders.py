"""The models compared side by side. One small contract, arrays in and out, no I/O:

    model.fit(view, validation=None) -> model
    model.scores(user_rows) -> (len(user_rows), n_items) float, higher is better (dataset rows)
    model.choices -> what was chosen or fitted, for the result JSON

`hybrid` is the served model: `model.training.train` on the pipeline's training data with the
params `finverse-reco train` would use (a params file from `finverse-reco tune`, or the settings),
scored as the service scores: a trained user by their vector, anyone else by the features they are
known by (`EmbeddingIndex.user_vector_from_features`), else the service's popularity fallback.
The rest are baselines: `popularity` (training users per item), `segment-popularity` (popularity
within the user's demographic segments: the service's fallback, `segment_popularity_scores`),
`ease` (Steck 2019; its ridge chosen on the validation split), `lightfm-cf` (LightFM with the seed's
parameters, identity features only), and `implicit-als` / `implicit-bpr` (the `bench` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from finverse_reco.evaluation import MODEL_NAMES
from finverse_reco.evaluation.datasets import Dataset, TrainView
from finverse_reco.index import EmbeddingIndex, user_query_from_features
from finverse_reco.index.popularity import Popularity as PopularityScores
from finverse_reco.model import HybridModel, ModelParams, TrainingParams, train
from finverse_reco.model.item_item import binary_history, ease_weights
from finverse_reco.pipeline.features import segment_key

ScoreFunction = Callable[[np.ndarray], np.ndarray]
# EASE's ridge is chosen among these on the validation split.
EASE_L2_GRID = (10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0)
# Above this many items the EASE baseline (an items × items matrix) is not run.
EASE_MAX_ITEMS = 20_000


@dataclass(frozen=True)
class Validation:
    """A validation split carved from the training pairs: the view trained on and a measure
    (higher is better) of a score function over its held-out pairs."""

    view: TrainView
    measure: Callable[[ScoreFunction], float]
    metric: str


class Recommender(Protocol):
    name: str
    ranks_unseen: bool  # has it anything to say about a user or an item without training pairs?
    choices: dict[str, Any]

    def fit(self, view: TrainView, validation: Validation | None = None) -> Recommender: ...

    def scores(self, users: np.ndarray) -> np.ndarray: ...


class Popularity:
    """Items by how many training users touched them; the same list for everyone."""

    name = "popularity"
    ranks_unseen = True  # the same list for anyone

    def __init__(self) -> None:
        self.choices: dict[str, Any] = {}
        self._counts: np.ndarray | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> Popularity:
        self._counts = np.diff(sp.csc_matrix(view.interactions).indptr).astype(np.float32)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._counts is not None, "fit first"
        return np.tile(self._counts, (len(users), 1))


class SegmentPopularity:
    """What the service falls back to for a customer it only knows by demographics: popularity
    within each of their segments (the pipeline's per-segment lists, `index.popularity`)."""

    name = "segment-popularity"
    ranks_unseen = True  # a new customer's demographics place them in segments

    def __init__(self, user_labels: Sequence[Mapping[str, str]]) -> None:
        self.choices: dict[str, Any] = {}
        self._labels = user_labels
        self._scores: PopularityScores | None = None
        self._item_rows: np.ndarray | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> SegmentPopularity:
        data = view.data
        keys = tuple(sorted(data.segment_popularity))
        weights = np.array([data.segment_popularity[key] for key in keys], dtype=np.float32)
        self._scores = PopularityScores(
            data.popularity, keys, weights.reshape(len(keys), len(data.items))
        )
        self._item_rows = view.item_rows
        self.choices = {"segments": len(keys)}
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._scores is not None and self._item_rows is not None, "fit first"
        out = np.zeros((len(users), len(self._item_rows)), dtype=np.float32)
        present = self._item_rows >= 0
        for row, user in enumerate(users):
            keys = [segment_key(k, v) for k, v in self._labels[user].items()]
            out[row, present] = self._scores.scores_in(keys)[self._item_rows[present]]
        return out


class Ease:
    """EASE on the binary training matrix; the ridge chosen on the validation split."""

    name = "ease"
    ranks_unseen = False

    def __init__(self) -> None:
        self.choices: dict[str, Any] = {}
        self._history: sp.csr_matrix | None = None
        self._weights: np.ndarray | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> Ease:
        if view.interactions.shape[1] > EASE_MAX_ITEMS:
            raise ValueError(f"EASE needs an items × items matrix: over {EASE_MAX_ITEMS} items")
        l2 = EASE_L2_GRID[len(EASE_L2_GRID) // 2]
        if validation is not None:
            scored = [
                (validation.measure(_ease_scores(validation.view, l2)), l2) for l2 in EASE_L2_GRID
            ]
            l2 = max(scored, key=lambda s: s[0])[1]  # ties: the first, smaller ridge
            self.choices["validation"] = {f"l2={v}": round(s, 4) for s, v in scored}
        self._history = binary_history(view.interactions)
        self._weights = ease_weights(view.interactions, l2)
        self.choices["l2"] = l2
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._history is not None and self._weights is not None, "fit first"
        return np.asarray(self._history[users] @ self._weights)


def _ease_scores(view: TrainView, l2: float) -> ScoreFunction:
    history, weights = binary_history(view.interactions), ease_weights(view.interactions, l2)
    return lambda users: np.asarray(history[users] @ weights)


class LightFMCF:
    """LightFM with the seed's parameters on identity features only: collaborative filtering."""

    name = "lightfm-cf"
    ranks_unseen = False

    def __init__(self, params: ModelParams) -> None:
        self.choices: dict[str, Any] = {}
        self._params = params
        self._users: np.ndarray | None = None
        self._items: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> LightFMCF:
        users = _identity_rows(np.diff(view.interactions.indptr) > 0)
        items = _identity_rows(np.diff(view.interactions.tocsc().indptr) > 0)
        model = HybridModel(self._params).fit(view.interactions, users, items)
        self._users = model.user_representations(users)[1]
        self._items = model.item_representations(items)
        self.choices = {"epochs": self._params.epochs, "no_components": self._params.no_components}
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._users is not None and self._items is not None, "fit first"
        biases, items = self._items
        return self._users[users] @ items.T + biases


class Hybrid:
    """The served model, trained by `train` and scored as the service scores (see the module
    docstring)."""

    name = "hybrid"
    ranks_unseen = True  # by features

    def __init__(self, params: TrainingParams, user_labels: Sequence[Mapping[str, str]]) -> None:
        self.params = params
        self.choices: dict[str, Any] = {}
        self._labels = user_labels
        self._index: EmbeddingIndex | None = None
        self._view: TrainView | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> Hybrid:
        self._index = train(view.data, self.params)
        self._view = view
        blend = {k: v for k, v in self._index.metrics.items() if k.startswith("item_item")}
        self.choices = {"params": self.params.source, **self.params.to_dict(), **blend}
        return self

    @property
    def index(self) -> EmbeddingIndex:
        assert self._index is not None, "fit first"
        return self._index

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._view is not None, "fit first"
        return served_scores(self.index, self._view, self._labels, users)


def served_scores(
    index: EmbeddingIndex,
    view: TrainView,
    user_labels: Sequence[Mapping[str, str]],
    users: np.ndarray,
) -> np.ndarray:
    """Scores of every dataset item for dataset users, as the service ranks them: a trained user
    by their vector; anyone else by the features their labels name; with none it knows,
    popularity within their segment (the service's fallback; its order, as scores)."""
    queries = np.zeros((len(users), index.dim + 1), dtype=np.float32)
    trained = view.user_rows[users] >= 0
    queries[trained] = index.user_queries(view.user_rows[users][trained])
    fallback = []
    by_labels: dict[frozenset, np.ndarray | None] = {}  # few distinct demographics
    for position in np.flatnonzero(~trained):
        labels = frozenset(user_labels[users[position]].items())
        if labels not in by_labels:
            features = {f"{k}:{v}": 1.0 for k, v in labels}
            by_labels[labels] = user_query_from_features(index, features) if features else None
        query = by_labels[labels]
        if query is None:
            fallback.append(position)
        else:
            queries[position] = query
    served = queries @ index.item_matrix.T
    for position in fallback:
        rows, _ = index.popular(index.n_items, segment=user_labels[users[position]]).of(0)
        served[position] = -np.inf
        served[position, rows] = np.arange(len(rows), 0, -1, dtype=np.float32)
    out = np.full((len(users), len(view.item_rows)), -np.inf, dtype=np.float32)
    present = view.item_rows >= 0
    out[:, present] = served[:, view.item_rows[present]]
    return out


class ImplicitRecommender:
    """`implicit` ALS or BPR on the binary training matrix."""

    ranks_unseen = False

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self.choices: dict[str, Any] = {}
        self._users: np.ndarray | None = None
        self._items: np.ndarray | None = None

    def fit(self, view: TrainView, validation: Validation | None = None) -> ImplicitRecommender:
        model = self._factory()
        model.fit(binary_history(view.interactions).astype(np.float32), show_progress=False)
        self._users = np.asarray(model.user_factors)
        self._items = np.asarray(model.item_factors)
        self.choices = {
            k: getattr(model, k)
            for k in ("factors", "regularization", "learning_rate", "alpha", "iterations")
            if hasattr(model, k)
        }
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._users is not None and self._items is not None, "fit first"
        return self._users[users] @ self._items.T


# The seed's LightFM parameters, one thread: LightFM's Hogwild updates are reproducible only so.
SEED_PARAMS = ModelParams(num_threads=1)


def build_recommender(
    name: str, seed: int, dataset: Dataset, params: TrainingParams
) -> Recommender:
    """A fresh model by name; raises ModuleNotFoundError when its extra is not installed."""
    if name == "popularity":
        return Popularity()
    if name == "segment-popularity":
        return SegmentPopularity(dataset.user_labels)
    if name == "ease":
        return Ease()
    if name == "lightfm-cf":
        return LightFMCF(replace(SEED_PARAMS, random_state=seed))
    if name == "hybrid":
        return Hybrid(params, dataset.user_labels)
    if name in ("implicit-als", "implicit-bpr"):
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        if name == "implicit-als":
            return ImplicitRecommender(
                name,
                lambda: AlternatingLeastSquares(
                    factors=64, regularization=0.05, iterations=15, num_threads=1, random_state=seed
                ),
            )
        return ImplicitRecommender(
            name,
            lambda: BayesianPersonalizedRanking(
                factors=64,
                learning_rate=0.01,
                regularization=0.01,
                iterations=100,
                num_threads=1,
                random_state=seed,
            ),
        )
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def _to_dataset_items(values: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
    out = np.zeros(len(item_rows), dtype=np.float32)
    present = item_rows >= 0
    out[present] = values[item_rows[present]]
    return out


def _identity_rows(has_identity: np.ndarray) -> sp.csr_matrix:
    """n × n one-hot rows for the flagged entities, empty rows for the rest."""
    rows = np.flatnonzero(has_identity)
    n = len(has_identity)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, rows)), shape=(n, n))
