"""The models compared side by side. One small contract, arrays in and out, no I/O:

    model.fit(view, tuning=None) -> model
    model.scores(user_rows) -> (len(user_rows), n_items) float32, higher is better
    model.choices -> what was chosen (hyperparameters, epochs), for the result JSON

`popularity` and `lightfm-cf` (LightFM with the seed's parameters and identity features only) are
the baselines; `hybrid` chooses among `HYBRID_CANDIDATES` on the validation split, with early
stopping, then refits on all training pairs; `implicit-als` / `implicit-bpr` need the `bench` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from finverse_reco.evaluation import MODEL_NAMES
from finverse_reco.evaluation.datasets import TrainView
from finverse_reco.model import HybridModel, ModelParams

ScoreFunction = Callable[[np.ndarray], np.ndarray]
# Early stopping: evaluate every epoch, stop after this many without improvement.
PATIENCE_EPOCHS = 15
MAX_EPOCHS = 100
# The hybrid's refit must take at most 15 s; half of it in CPU seconds leaves room for a machine
# shared with other work (wall time there runs up to twice the CPU time).
FIT_BUDGET_CPU_SECONDS = 7.5


@dataclass(frozen=True)
class Tuning:
    """A validation split: the view trained on and a measure (higher is better) of a score
    function over its held-out pairs."""

    view: TrainView
    measure: Callable[[ScoreFunction], float]
    metric: str


class Recommender(Protocol):
    name: str
    uses_features: bool
    choices: dict[str, Any]

    def fit(self, view: TrainView, tuning: Tuning | None = None) -> Recommender: ...

    def scores(self, users: np.ndarray) -> np.ndarray: ...


class Popularity:
    """Items by how many training users touched them; the same list for everyone."""

    name = "popularity"
    uses_features = False

    def __init__(self) -> None:
        self.choices: dict[str, Any] = {}
        self._counts: np.ndarray | None = None

    def fit(self, view: TrainView, tuning: Tuning | None = None) -> Popularity:
        counts = np.diff(sp.csc_matrix(view.interactions).indptr)
        self._counts = counts.astype(np.float32)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._counts is not None, "fit first"
        return np.tile(self._counts, (len(users), 1))


@dataclass(frozen=True)
class HybridCandidate:
    """LightFM parameters and how much of a feature row the side features take (0: identity only,
    pure collaborative filtering; users or items without an identity always use their side)."""

    name: str
    params: ModelParams
    user_side_share: float
    item_side_share: float

    def to_dict(self) -> dict[str, Any]:
        p = self.params
        return {
            "candidate": self.name,
            "no_components": p.no_components,
            "learning_rate": p.learning_rate,
            "loss": p.loss,
            "user_alpha": p.user_alpha,
            "item_alpha": p.item_alpha,
            "max_sampled": p.max_sampled,
            "user_side_share": self.user_side_share,
            "item_side_share": self.item_side_share,
        }


def _params(**changes: Any) -> ModelParams:
    # One thread: LightFM's Hogwild updates are reproducible only single-threaded.
    return ModelParams(num_threads=1, **changes)


SEED_PARAMS = _params()
TUNED_PARAMS = _params(no_components=64, learning_rate=0.02, user_alpha=1e-4, item_alpha=1e-4)
HYBRID_CANDIDATES = (
    HybridCandidate("identity-only", TUNED_PARAMS, 0.0, 0.0),
    HybridCandidate("item-features", TUNED_PARAMS, 0.0, 0.5),
    HybridCandidate("user+item-features", TUNED_PARAMS, 0.5, 0.5),
    HybridCandidate("seed-params+features", SEED_PARAMS, 0.5, 0.5),
)


def feature_rows(identity: sp.csr_matrix, side: sp.csr_matrix, side_share: float) -> sp.csr_matrix:
    """[identity | side] with each row summing to 1: the side takes `side_share` of rows that have
    both, all of a row without identity; with share 0 the side columns are left out entirely."""
    if side_share == 0.0 or side.shape[1] == 0:
        return sp.csr_matrix(identity, dtype=np.float32)
    has_identity = np.diff(identity.indptr) > 0
    has_side = np.diff(side.indptr) > 0
    identity_weight = np.where(has_side, 1.0 - side_share, 1.0)
    side_weight = np.where(has_identity, side_share, 1.0)
    rows = sp.hstack(
        [sp.diags(identity_weight) @ identity, sp.diags(side_weight) @ side], format="csr"
    )
    return sp.csr_matrix(rows, dtype=np.float32)


class LightFMRecommender:
    """LightFM through `HybridModel`, scored from representations as serving scores."""

    def __init__(self, name: str, candidates: Sequence[HybridCandidate], fixed_epochs: bool):
        self.name = name
        self.uses_features = any(c.user_side_share or c.item_side_share for c in candidates)
        self._candidates = tuple(candidates)
        self._fixed_epochs = fixed_epochs
        self.choices: dict[str, Any] = {}
        self._user_features: sp.csr_matrix | None = None
        self._model: HybridModel | None = None
        self._items: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, view: TrainView, tuning: Tuning | None = None) -> LightFMRecommender:
        chosen, epochs = self._candidates[0], self._candidates[0].params.epochs
        if tuning is not None and not self._fixed_epochs:
            started = time.perf_counter()
            chosen, epochs, table = self._select(tuning, view)
            self.choices["selection_seconds"] = round(time.perf_counter() - started, 2)
            self.choices["validation"] = table
        params = replace(chosen.params, epochs=epochs, patience=None)
        started, cpu_started = time.perf_counter(), time.process_time()
        self._fit(view, chosen, params)
        self.choices["refit_seconds"] = time.perf_counter() - started
        self.choices["refit_cpu_seconds"] = time.process_time() - cpu_started
        self.choices.update(chosen.to_dict(), epochs=epochs)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        assert self._model is not None and self._items is not None, "fit first"
        assert self._user_features is not None
        _, vectors = self._model.user_representations(self._user_features[users])
        biases, items = self._items
        return vectors @ items.T + biases

    def _fit(
        self,
        view: TrainView,
        candidate: HybridCandidate,
        params: ModelParams,
        measure: Callable[[ScoreFunction], float] | None = None,
    ) -> tuple[HybridModel, float]:
        """Fit on `view`; with `measure`, score every epoch's model with it (early stopping).
        Returns the model and the CPU seconds spent training (validation scoring left out)."""
        user_features = feature_rows(view.user_identity, view.user_side, candidate.user_side_share)
        item_features = feature_rows(view.item_identity, view.item_side, candidate.item_side_share)
        self._user_features = user_features
        scoring_cpu = 0.0

        def validation_score(model: HybridModel) -> float:
            nonlocal scoring_cpu
            started = time.process_time()
            self._model = model
            self._items = model.item_representations(item_features)
            score = measure(self.scores)
            scoring_cpu += time.process_time() - started
            return score

        started = time.process_time()
        model = HybridModel(params).fit(
            view.interactions,
            user_features,
            item_features,
            validation_score=validation_score if measure is not None else None,
        )
        training_cpu = time.process_time() - started - scoring_cpu
        self._model = model
        self._items = model.item_representations(item_features)
        return model, training_cpu

    def _select(self, tuning: Tuning, view: TrainView) -> tuple[HybridCandidate, int, list]:
        """Each candidate trained on the validation view with early stopping. The best validation
        score wins among candidates whose refit on `view` is estimated (CPU seconds per epoch in
        selection × best epoch × size ratio) to fit `FIT_BUDGET_CPU_SECONDS`; if none does, the
        cheapest. CPU time, not wall time: the choice should not depend on a busy neighbour."""
        size_ratio = view.interactions.nnz / max(tuning.view.interactions.nnz, 1)
        table, scored = [], []
        for candidate in self._candidates:
            params = replace(candidate.params, epochs=MAX_EPOCHS, patience=PATIENCE_EPOCHS)
            model, training_cpu = self._fit(tuning.view, candidate, params, tuning.measure)
            report = model.fit_report
            score = float(report.best_precision or 0.0)  # the measure's best, whatever it is
            estimate = training_cpu / report.epochs_run * report.best_epoch * size_ratio
            table.append(
                {
                    "candidate": candidate.name,
                    tuning.metric: round(score, 4),
                    "best_epoch": report.best_epoch,
                    "epochs_run": report.epochs_run,
                    "estimated_refit_cpu_seconds": round(estimate, 2),
                }
            )
            scored.append((score, -estimate, candidate, report.best_epoch))
        affordable = [s for s in scored if -s[1] <= FIT_BUDGET_CPU_SECONDS]
        _, _, chosen, epochs = (
            max(affordable, key=lambda s: s[0]) if affordable else max(scored, key=lambda s: s[1])
        )
        return chosen, epochs, table


class ImplicitRecommender:
    """`implicit` ALS or BPR on the binary training matrix."""

    uses_features = False

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self.choices: dict[str, Any] = {}
        self._users: np.ndarray | None = None
        self._items: np.ndarray | None = None

    def fit(self, view: TrainView, tuning: Tuning | None = None) -> ImplicitRecommender:
        model = self._factory()
        binary = sp.csr_matrix(view.interactions, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        model.fit(binary, show_progress=False)
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


def build_recommender(name: str, seed: int) -> Recommender:
    """A fresh model by name; raises ModuleNotFoundError when its extra is not installed."""
    if name == "popularity":
        return Popularity()
    if name == "lightfm-cf":
        candidate = HybridCandidate("seed-params", replace(SEED_PARAMS, random_state=seed), 0, 0)
        return LightFMRecommender(name, [candidate], fixed_epochs=True)
    if name == "hybrid":
        candidates = [
            replace(c, params=replace(c.params, random_state=seed)) for c in HYBRID_CANDIDATES
        ]
        return LightFMRecommender(name, candidates, fixed_epochs=False)
    if name in ("implicit-als", "implicit-bpr"):
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        if name == "implicit-als":
            return ImplicitRecommender(
                name,
                lambda: AlternatingLeastSquares(
                    factors=64,
                    regularization=0.05,
                    iterations=15,
                    num_threads=1,
                    random_state=seed,
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
