"""The hybrid model: LightFM over user and item feature matrices. Arrays in, arrays out, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelParams:
    """LightFM hyperparameters (seed defaults) and how training runs.

    `sample_weighting`: interaction weights reach LightFM as per-interaction sample weights (WARP and
    BPR treat any positive entry as a positive; the weight scales its gradient step). "log1p"
    compresses heavy users' summed weights, "linear" keeps them, "none" ignores them. Weights are
    rescaled to mean 1 (so `learning_rate` keeps its meaning) and capped at `max_sample_weight`.
    `patience`: with a per-epoch validation score, stop after this many epochs without a better
    one and keep the best epoch's embeddings; None trains all `epochs` (the history and best epoch
    are still reported). `eval_k`: the k of the validation precision a training run records.
    """

    no_components: int = 50
    learning_rate: float = 0.05
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = "warp"
    epochs: int = 20
    user_alpha: float = 1e-5
    item_alpha: float = 1e-5
    max_sampled: int = 10
    learning_schedule: Literal["adagrad", "adadelta"] = "adagrad"
    num_threads: int = 2
    random_state: int = 42
    sample_weighting: Literal["log1p", "linear", "none"] = "log1p"
    max_sample_weight: float = 10.0
    eval_k: int = 10
    patience: int | None = 3

    def __post_init__(self) -> None:
        if self.no_components < 1 or self.epochs < 1 or self.num_threads < 1:
            raise ValueError("no_components, epochs and num_threads must be >= 1")
        if self.learning_rate <= 0 or self.user_alpha < 0 or self.item_alpha < 0:
            raise ValueError("learning_rate must be > 0 and the alphas >= 0")
        if self.max_sample_weight <= 0 or self.eval_k < 1:
            raise ValueError("max_sample_weight must be > 0 and eval_k >= 1")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be >= 1 or None")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHOICES = {
    "loss": ("warp", "bpr", "logistic", "warp-kos"),
    "learning_schedule": ("adagrad", "adadelta"),
    "sample_weighting": ("log1p", "linear", "none"),
}


@dataclass(frozen=True)
class FitReport:
    epochs_run: int
    best_epoch: int
    best_score: float | None
    history: tuple[float, ...]  # the validation score per epoch (empty without one)


class HybridModel:
    """`HybridModel(params).fit(interactions, user_features, item_features) -> self`.

    After `fit`, representations are computed from feature matrices (any rows: training users, new
    users described by features, …) as contiguous float32 arrays.
    """

    def __init__(self, params: ModelParams | None = None) -> None:
        self.params = params or ModelParams()
        self._report: FitReport | None = None
        self._model: LightFM | None = None

    def fit(
        self,
        interactions: sp.spmatrix,
        user_features: sp.spmatrix,
        item_features: sp.spmatrix,
        *,
        validation_score: Callable[[HybridModel], float] | None = None,
        progress: Progress | None = None,
    ) -> HybridModel:
        """Train on a user×item matrix of positive weights (zero = no interaction).

        With `validation_score(model)` (higher is better) the model is scored after every epoch
        and, with `params.patience`, training stops early and the best epoch's state is kept.
        """
        p = self.params
        interactions = sp.coo_matrix(interactions, dtype=np.float32)
        interactions.sum_duplicates()
        interactions.eliminate_zeros()  # a stored 0 is no interaction, not a positive
        if interactions.nnz == 0:
            raise ValueError("no interactions to train on")
        if (interactions.data < 0).any() or not np.isfinite(interactions.data).all():
            raise ValueError("interaction weights must be finite and >= 0")
        user_features = sp.csr_matrix(user_features, dtype=np.float32)
        item_features = sp.csr_matrix(item_features, dtype=np.float32)
        if user_features.shape[0] != interactions.shape[0]:
            raise ValueError("user_features must have one row per interaction row")
        if item_features.shape[0] != interactions.shape[1]:
            raise ValueError("item_features must have one row per interaction column")
        positives = sp.coo_matrix(
            (np.ones(interactions.nnz, np.float32), (interactions.row, interactions.col)),
            shape=interactions.shape,
        )
        weights = self._sample_weights(interactions)

        model = LightFM(
            no_components=p.no_components,
            learning_rate=p.learning_rate,
            loss=p.loss,
            learning_schedule=p.learning_schedule,
            user_alpha=p.user_alpha,
            item_alpha=p.item_alpha,
            max_sampled=p.max_sampled,
            random_state=np.random.RandomState(p.random_state),
        )
        self._model = model
        history: list[float] = []
        best: tuple[float, int, dict[str, np.ndarray]] | None = None
        epochs_run = 0
        for epoch in range(1, p.epochs + 1):
            model.fit_partial(
                positives,
                user_features=user_features,
                item_features=item_features,
                sample_weight=weights,
                epochs=1,
                num_threads=p.num_threads,
            )
            epochs_run = epoch
            if progress is not None:
                progress(epoch, p.epochs)
            if validation_score is None:
                continue
            score = validation_score(self)
            history.append(score)
            if best is None or score > best[0]:
                best = (score, epoch, self._state())
            elif p.patience is not None and epoch - best[1] >= p.patience:
                break
        if best is not None and p.patience is not None:
            self._restore(best[2])
        self._report = FitReport(
            epochs_run=epochs_run,
            best_epoch=best[1] if best is not None else epochs_run,
            best_score=best[0] if best is not None else None,
            history=tuple(history),
        )
        return self

    @property
    def fit_report(self) -> FitReport:
        """Epochs run, best epoch and validation history of the last `fit`."""
        if self._report is None:
            raise RuntimeError("the model is not fitted yet")
        return self._report

    # --- representations: float32, C-contiguous ---------------------------------------------------

    def user_representations(self, user_features: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        """(biases (n,), vectors (n, d)) for users described by feature rows."""
        biases, vectors = self._fitted().get_user_representations(
            sp.csr_matrix(user_features, dtype=np.float32)
        )
        return _f32(biases), _f32(vectors)

    def item_representations(self, item_features: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        biases, vectors = self._fitted().get_item_representations(
            sp.csr_matrix(item_features, dtype=np.float32)
        )
        return _f32(biases), _f32(vectors)

    @property
    def user_embeddings(self) -> np.ndarray:
        """One vector per user feature (rows of the user feature matrix's columns)."""
        return _f32(self._fitted().user_embeddings)

    @property
    def user_biases(self) -> np.ndarray:
        return _f32(self._fitted().user_biases)

    @property
    def item_embeddings(self) -> np.ndarray:
        return _f32(self._fitted().item_embeddings)

    @property
    def item_biases(self) -> np.ndarray:
        return _f32(self._fitted().item_biases)

    # --- internals ---------------------------------------------------------------------------------

    def _sample_weights(self, interactions: sp.coo_matrix) -> sp.coo_matrix | None:
        p = self.params
        if p.sample_weighting == "none" or p.loss == "warp-kos":  # k-OS takes no sample weights
            return None
        values = interactions.data.astype(np.float64)
        if p.sample_weighting == "log1p":
            values = np.log1p(values)
        values = np.minimum(values / values.mean(), p.max_sample_weight).astype(np.float32)
        return sp.coo_matrix(
            (values, (interactions.row, interactions.col)), shape=interactions.shape
        )

    def _fitted(self) -> LightFM:
        if self._model is None or self._model.item_embeddings is None:
            raise RuntimeError("the model is not fitted yet")
        return self._model

    _STATE = ("user_embeddings", "user_biases", "item_embeddings", "item_biases")

    def _state(self) -> dict[str, np.ndarray]:
        model = self._fitted()
        return {name: getattr(model, name).copy() for name in self._STATE}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        model = self._fitted()
        for name, value in state.items():
            setattr(model, name, value)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)
