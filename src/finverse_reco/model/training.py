"""TrainingData → fitted hybrid model → EmbeddingIndex (what serving loads)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.index import EmbeddingIndex
from finverse_reco.model.hybrid import HybridModel, ModelParams, Progress
from finverse_reco.pipeline import TrainingData


def train(
    data: TrainingData,
    params: ModelParams,
    *,
    validation_fraction: float = 0.0,
    progress: Progress | None = None,
    refit: bool = True,
) -> EmbeddingIndex:
    """Fit and build the serving index.

    With `validation_fraction` > 0, that share of each user's interactions (never a user's last
    one) is held out: the model trains on the rest with early stopping, and the held-out
    precision@k is recorded as `validation_precision@k` (an honest estimate: those interactions were
    never trained on). With `refit`, a final model is then trained on everything for the best
    epoch count. `progress(epoch, total)` is called after every epoch of every fit.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    metrics: dict[str, Any] = {}
    model = None
    if validation_fraction > 0:
        kept, held_out = split_interactions(
            data.interactions, validation_fraction, seed=params.random_state
        )
        if held_out.nnz:
            probe = HybridModel(params).fit(
                kept, data.user_features, data.item_features, validation=held_out, progress=progress
            )
            report = probe.fit_report
            metrics[f"validation_precision@{params.eval_k}"] = report.best_precision
            metrics["best_epoch"] = report.best_epoch
            metrics["validation_epochs_run"] = report.epochs_run
            metrics["validation_history"] = list(report.history)
            metrics["validation_interactions"] = int(held_out.nnz)
            if refit:
                params = replace(params, epochs=report.best_epoch)
            else:
                model = probe
    if model is None:
        model = HybridModel(params).fit(
            data.interactions, data.user_features, data.item_features, progress=progress
        )
    return build_index(model, data, params, metrics)


def split_interactions(
    interactions: sp.spmatrix, fraction: float, *, seed: int
) -> tuple[sp.coo_matrix, sp.coo_matrix]:
    """(kept, held_out): each entry held out with probability `fraction`, except that every user
    keeps at least one entry (their first by column) so nobody vanishes from training."""
    matrix = sp.csr_matrix(interactions)
    matrix.sort_indices()
    rng = np.random.default_rng(seed)
    held = rng.random(matrix.nnz) < fraction
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    totals = np.diff(matrix.indptr)
    held_per_row = np.bincount(rows[held], minlength=matrix.shape[0])
    emptied = np.flatnonzero((held_per_row == totals) & (totals > 0))
    held[matrix.indptr[emptied]] = False
    coo = matrix.tocoo()
    return _subset(coo, ~held), _subset(coo, held)


def build_index(
    model: HybridModel,
    data: TrainingData,
    params: ModelParams,
    metrics: dict[str, Any] | None = None,
) -> EmbeddingIndex:
    """Representations computed once from the feature matrices, plus everything serving needs."""
    _, user_vectors = model.user_representations(data.user_features)
    item_biases, item_vectors = model.item_representations(data.item_features)
    item_matrix = np.empty((len(data.items), item_vectors.shape[1] + 1), dtype=np.float32)
    item_matrix[:, :-1] = item_vectors
    item_matrix[:, -1] = item_biases

    categories, category_codes = _codes([data.item_meta[i]["category"] for i in data.items])
    institutions, institution_codes = _codes([data.item_meta[i]["institution"] for i in data.items])
    segment_keys = sorted(data.segment_popularity)
    segment_popularity = np.zeros((len(segment_keys), len(data.items)), dtype=np.float32)
    for row, key in enumerate(segment_keys):
        segment_popularity[row] = data.segment_popularity[key]
    seen = sp.csr_matrix(data.interactions)
    seen.sort_indices()
    start, end = data.data_window
    return EmbeddingIndex(
        users=data.users,
        items=data.items,
        user_vectors=user_vectors,
        item_matrix=item_matrix,
        user_feature_names=data.user_feature_names,
        user_feature_embeddings=model.user_embeddings,
        user_feature_biases=model.user_biases,
        item_feature_names=data.item_feature_names,
        item_feature_embeddings=model.item_embeddings,
        item_feature_biases=model.item_biases,
        item_categories=category_codes,
        category_names=categories,
        item_institutions=institution_codes,
        institution_names=institutions,
        popularity=data.popularity,
        segment_keys=tuple(segment_keys),
        segment_popularity=segment_popularity,
        seen_indptr=seen.indptr.astype(np.int64),
        seen_indices=seen.indices.astype(np.int32),
        feature_config=data.feature_config,
        params={
            "model": params.to_dict(),
            "weighting": data.weighting.to_dict(),
            "features": data.feature_config.to_dict(),
        },
        metrics=metrics or {},
        training={
            "data_window": [
                start.isoformat() if start else None,
                end.isoformat() if end else None,
            ],
            "reference_time": data.reference_time.isoformat(),
            "counts": dict(data.counts),
        },
    )


def _subset(coo: sp.coo_matrix, mask: np.ndarray) -> sp.coo_matrix:
    return sp.coo_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=coo.shape)


def _codes(labels: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Sorted distinct non-empty labels and each row's code into them (-1 for "")."""
    names = tuple(sorted({label for label in labels if label}))
    position = {name: code for code, name in enumerate(names)}
    codes = np.fromiter((position.get(label, -1) for label in labels), np.int32, len(labels))
    return names, codes
