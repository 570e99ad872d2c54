"""`finverse-reco tune`: choose what `train` fits, on a validation split, and write a params file.

The protocol's validation split is carved from the training pairs of its evaluation split (the
same seed), so the choice never sees a test pair; a cold protocol validates on held-out users
(`cold-user`) or items (`cold-item`), so its choice is made where features are all there is.
Every candidate is fitted with `model.training.fit_model` and scored after every epoch with
`build_index` and the service's scoring (`served_scores`), i.e. exactly what `train` would serve
after that many epochs, with each blend weight: the item-item weight where users have history,
the segment weight under `cold-user`. The best (candidate, epochs, weights) wins; ties go to
fewer epochs, then the earlier candidate, then the smaller weights. Under a warm protocol the
segment weight (it only changes customers known by demographics alone) is then chosen apart,
on 20% of the training users held out whole, with the chosen params.

The budget is counted in epochs and candidates (`max_epochs`, `patience`, the candidate list),
never in seconds: the same command gives the same choice on any machine under any load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from finverse_reco.evaluation.datasets import Dataset, DatasetError, TrainView
from finverse_reco.evaluation.harness import RankingTask
from finverse_reco.evaluation.protocols import (
    VALIDATION_SEED_OFFSET,
    Split,
    split_pairs,
    validation_split,
)
from finverse_reco.evaluation.recommenders import EASE_L2_GRID, ScoreFunction, served_scores
from finverse_reco.model import BlendParams, HybridModel, TrainingParams
from finverse_reco.model.item_item import ItemItemFactors, binary_history, ease_weights
from finverse_reco.model.training import build_index, fit_model

MAX_EPOCHS = 80
PATIENCE_EPOCHS = 15
ITEM_ITEM_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
SEGMENT_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Candidate:
    """LightFM hyperparameters (changes to the base `ModelParams`) and the identity weights:
    every candidate mixes side features into the rows (a weight < 1), so cold users and items
    always have trained feature embeddings."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    user_identity_weight: float = 0.5
    item_identity_weight: float = 0.5


_TUNED = {"no_components": 64, "learning_rate": 0.02, "user_alpha": 1e-4, "item_alpha": 1e-4}
CANDIDATES = (
    Candidate("balanced", _TUNED, 0.5, 0.5),
    Candidate("identity-leaning", _TUNED, 0.9, 0.75),
    Candidate("feature-leaning", _TUNED, 0.25, 0.5),
    # Users almost only by their demographics: what a customer without history looks like.
    Candidate("demographic", {"no_components": 32, "learning_rate": 0.05}, 0.1, 0.5),
    Candidate(
        "seed",
        {"no_components": 50, "learning_rate": 0.05, "user_alpha": 1e-5, "item_alpha": 1e-5},
        0.5,
        0.5,
    ),
)


@dataclass(frozen=True)
class TuneResult:
    params: TrainingParams
    tuned_on: dict[str, Any]  # provenance and the whole search table, for the params file


def tune(
    dataset: Dataset,
    protocol: str,
    seed: int,
    *,
    base: TrainingParams | None = None,
    k: int = 10,
    candidates: Sequence[Candidate] = CANDIDATES,
    max_epochs: int = MAX_EPOCHS,
    patience: int = PATIENCE_EPOCHS,
    item_item_weights: Sequence[float] = ITEM_ITEM_WEIGHTS,
    segment_weights: Sequence[float] = SEGMENT_WEIGHTS,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Search `candidates` × epochs × blend weights on the protocol's validation split."""
    if max_epochs < 1 or patience < 1 or not candidates:
        raise ValueError("max_epochs and patience must be >= 1, and there must be a candidate")
    base = base or TrainingParams()
    split = split_pairs(protocol, dataset.users, dataset.items, dataset.timestamps, seed)
    validation = validation_split(
        protocol, split, dataset.users, dataset.items, dataset.timestamps, seed
    )
    if not validation.train.any() or not validation.test.any():
        raise DatasetError(f"too few pairs for a {protocol} validation split of {dataset.name}")
    task = RankingTask.from_split(dataset, validation, k)
    measure, metric = (
        (task.auc, "auc") if protocol == "cold-item" else (task.precision, f"precision@{k}")
    )
    # Item-item needs a history (a cold user has none, a cold item no co-occurrence) and an
    # affordable items × items matrix; the segment prior reaches only users without history.
    warm = not protocol.startswith("cold")
    item_item = (
        _grid(item_item_weights) if warm and dataset.n_items <= base.blend.max_items else (0.0,)
    )
    segment = _grid(segment_weights) if protocol == "cold-user" else (0.0,)
    blend, ease_table = _blend_ridge(dataset, validation.train, measure, base, item_item)
    grid = [
        replace(blend, item_item_weight=i, segment_weight=s) for i in item_item for s in segment
    ]

    table, best = [], None
    total = len(candidates) * max_epochs
    for number, candidate in enumerate(candidates):
        features = replace(
            base.features,
            user_identity_weight=candidate.user_identity_weight,
            item_identity_weight=candidate.item_identity_weight,
        )
        view = dataset.train_view(validation.train, features)
        params = TrainingParams(
            replace(
                base.model,
                **candidate.model,
                epochs=max_epochs,
                patience=patience,
                random_state=seed,
                num_threads=1,  # Hogwild updates are reproducible only single-threaded
            ),
            features,
            blend,
        )
        factors = (
            ItemItemFactors.fit(view.data.interactions, blend.l2, blend.rank)
            if len(item_item) > 1
            else None
        )
        done = number * max_epochs
        history = _epoch_scores(
            dataset,
            view,
            params,
            grid,
            factors,
            measure,
            None if progress is None else lambda epoch, done=done: progress(done + epoch, total),
        )
        if progress is not None:
            progress((number + 1) * max_epochs, total)
        score, epoch, weights = max(
            (
                (score, epoch, weights)
                for epoch, scores in enumerate(history, start=1)
                for weights, score in zip(grid, scores, strict=True)
            ),
            key=lambda c: (c[0], -c[1], -c[2].item_item_weight, -c[2].segment_weight),
        )
        table.append(
            {
                "candidate": candidate.name,
                **{name: getattr(params.model, name) for name in candidate.model},
                "user_identity_weight": candidate.user_identity_weight,
                "item_identity_weight": candidate.item_identity_weight,
                metric: round(score, 4),
                "best_epoch": epoch,
                "item_item_weight": weights.item_item_weight,
                "segment_weight": weights.segment_weight,
                "epochs_run": len(history),
            }
        )
        if best is None or (score, -epoch) > (best[0], -best[1]):
            best = (score, epoch, weights, params)
    assert best is not None
    score, epoch, weights, params = best
    chosen = TrainingParams(
        replace(params.model, epochs=epoch, patience=base.model.patience),
        params.features,
        weights,
    )
    cold_start: dict[str, Any] = {}
    if warm and any(dataset.user_labels):
        chosen, cold_start = _segment_weight(dataset, split, seed, k, chosen, segment_weights)
    return TuneResult(
        chosen,
        {
            "dataset": dataset.name,
            "protocol": protocol,
            "seed": seed,
            "k": k,
            "metric": metric,
            "validation_score": round(score, 6),
            "max_epochs": max_epochs,
            "patience": patience,
            "item_item_weights": list(item_item),
            "segment_weights": list(segment),
            "ease_l2": ease_table,
            "candidates": table,
            **({"cold_start": cold_start} if cold_start else {}),
        },
    )


def _grid(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(sorted({0.0, *weights}))


def _epoch_scores(
    dataset: Dataset,
    view: TrainView,
    params: TrainingParams,
    grid: Sequence[BlendParams],
    factors: ItemItemFactors | None,
    measure: Callable[[ScoreFunction], float],
    progress: Callable[[int], None] | None,
) -> list[list[float]]:
    """One fit of `params`; after every epoch, the validation score of what `train` would serve
    with each blend of `grid` (the best of them drives early stopping)."""
    history: list[list[float]] = []

    def on_epoch(model: HybridModel) -> float:
        history.append(
            [
                _served_score(dataset, view, model, replace(params, blend=blend), factors, measure)
                for blend in grid
            ]
        )
        if progress is not None:
            progress(len(history))
        return max(history[-1])

    fit_model(view.data, params, on_epoch=on_epoch)
    return history


def _served_score(
    dataset: Dataset,
    view: TrainView,
    model: HybridModel,
    params: TrainingParams,
    factors: ItemItemFactors | None,
    measure: Callable[[ScoreFunction], float],
) -> float:
    index = build_index(model, view.data, params, item_item=factors)
    return measure(partial(served_scores, index, view, dataset.user_labels))


def _segment_weight(
    dataset: Dataset,
    split: Split,
    seed: int,
    k: int,
    chosen: TrainingParams,
    weights: Sequence[float],
) -> tuple[TrainingParams, dict[str, Any]]:
    """The segment weight for customers without history, chosen with `chosen` fitted once on
    the protocol's training pairs minus 20% of its users, measured on those users."""
    cold = split_pairs(
        "cold-user",
        dataset.users,
        dataset.items,
        dataset.timestamps,
        seed + VALIDATION_SEED_OFFSET,
        within=split.train,
    )
    if not cold.test.any():
        return chosen, {}
    view = dataset.train_view(cold.train, chosen.features)
    task = RankingTask.from_split(dataset, cold, k)
    model = fit_model(view.data, chosen)
    scores = {
        weight: _served_score(
            dataset,
            view,
            model,
            replace(chosen, blend=replace(chosen.blend, segment_weight=weight)),
            None,
            task.precision,
        )
        for weight in _grid(weights)
    }
    best = max(scores, key=lambda w: (scores[w], -w))
    return replace(chosen, blend=replace(chosen.blend, segment_weight=best)), {
        "split": "cold-user within the training pairs",
        f"precision@{k}": {f"{w:g}": round(s, 4) for w, s in scores.items()},
        "segment_weight": best,
    }


def _blend_ridge(
    dataset: Dataset,
    train,
    measure: Callable[[ScoreFunction], float],
    base: TrainingParams,
    weights: Sequence[float],
) -> tuple[BlendParams, dict[str, float]]:
    """The item-item ridge, chosen by EASE alone on the validation split (cheap: one
    items × items solve per value), unless no item-item weight above 0 is searched."""
    if len(weights) == 1:
        return base.blend, {}
    interactions = dataset.train_view(train, base.features).interactions
    history = binary_history(interactions)
    scored = {}
    for l2 in EASE_L2_GRID:
        item_item = ease_weights(interactions, l2)
        scored[l2] = measure(lambda users, w=item_item: history[users] @ w)
    best = max(scored, key=lambda l2: (scored[l2], -l2))
    return replace(base.blend, l2=best), {f"l2={l2:g}": round(s, 4) for l2, s in scored.items()}
