"""TrainingData + TrainingParams → fitted hybrid model → EmbeddingIndex (what serving loads).

`train` is the one training path: `finverse-reco train`, the scheduled retraining, the guardrail's
validation fit, `finverse-reco evaluate`'s `hybrid` row and `finverse-reco tune`'s candidates all fit
with `fit_model` and turn the fit into served arrays with `served_arrays`. Given the same data and
params (and one LightFM thread) the result is the same, bit for bit, on any machine under any load.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from finverse_reco.index import EmbeddingIndex
from finverse_reco.model.blend import (
    Dimensions,
    appended,
    sample_rows,
    segment_shares,
    spread_ratio,
)
from finverse_reco.model.hybrid import HybridModel, Progress
from finverse_reco.model.item_item import ItemItemFactors
from finverse_reco.model.params import FEATURE_FIELDS, TrainingParams
from finverse_reco.model.ranking_metrics import precision_at_k
from finverse_reco.pipeline import TrainingData
from finverse_reco.pipeline.features import USER_IDENTITY_PREFIX, segment_key


def train(
    data: TrainingData,
    params: TrainingParams,
    *,
    validation_fraction: float = 0.0,
    progress: Progress | None = None,
) -> EmbeddingIndex:
    """Fit on all of `data` for `params.model.epochs` epochs and build the serving index.

    With `validation_fraction` > 0 a second fit measures the same params on that share of each
    user's interactions held out (never a user's last one): `validation_precision@k` in the index's
    metrics is an honest estimate for the guardrail. It never changes what is served.
    `progress(epoch, total)` is called after every epoch of the served fit.

    The validation fit and the item-item factors run in threads beside the served fit (LightFM and
    LAPACK release the GIL): independent computations, so the result is the same as one after the
    other, in less wall time on a machine with cores to spare.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    _check_features(data, params)
    blend = params.blend
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="training") as pool:
        probe = (
            pool.submit(validation_metrics, data, params, validation_fraction)
            if validation_fraction > 0
            else None
        )
        factors = (
            pool.submit(ItemItemFactors.fit, data.interactions, blend.l2, blend.rank)
            if blend.item_item_weight > 0 and len(data.items) <= blend.max_items
            else None
        )
        model = fit_model(data, params, progress=progress)
        metrics = probe.result() if probe is not None else {}
        item_item = factors.result() if factors is not None else None
    return build_index(model, data, params, metrics, item_item=item_item)


def fit_model(
    data: TrainingData,
    params: TrainingParams,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[HybridModel], float] | None = None,
) -> HybridModel:
    """LightFM on the pipeline's matrices. `on_epoch(model)` (a validation score, higher is
    better) lets `tune` watch every epoch of the same fit; with `params.model.patience` it also
    stops early and keeps the best epoch."""
    _check_features(data, params)
    return HybridModel(params.model).fit(
        data.interactions,
        data.user_features,
        data.item_features,
        validation_score=on_epoch,
        progress=progress,
    )


@dataclass(frozen=True)
class ServedArrays:
    """What the index ranks with: LightFM's representations, with the blends' dimensions
    appended when the params ask for them."""

    user_vectors: np.ndarray  # (n_users, d')
    item_vectors: np.ndarray  # (n_items, d')
    item_biases: np.ndarray  # (n_items,)
    user_feature_embeddings: np.ndarray  # (n_user_features, d')
    item_feature_embeddings: np.ndarray  # (n_item_features, d')
    blend: dict[str, Any]  # what each blend did (for the index's metrics)


def served_arrays(
    model: HybridModel,
    data: TrainingData,
    params: TrainingParams,
    item_item: ItemItemFactors | None = None,
) -> ServedArrays:
    """The fitted model's representations, blended as `params.blend` says. `item_item` (fitted
    on `data.interactions` with the same l2 and rank) saves refitting it, e.g. every epoch."""
    _, user_vectors = model.user_representations(data.user_features)
    item_biases, item_vectors = model.item_representations(data.item_features)
    user_embeddings, item_embeddings = model.user_embeddings, model.item_embeddings
    blend, seed = params.blend, params.model.random_state
    blocks, report = [], {}
    if blend.item_item_weight > 0:
        if len(data.items) > blend.max_items:
            report["item_item"] = f"skipped: {len(data.items)} items > {blend.max_items}"
        else:
            factors = item_item or ItemItemFactors.fit(data.interactions, blend.l2, blend.rank)
            history = factors.user_part(data.interactions)
            sample = sample_rows(np.flatnonzero(np.abs(history).sum(axis=1) > 0), seed)
            scale = blend.item_item_weight * spread_ratio(
                user_vectors[sample] @ item_vectors.T + item_biases,
                history[sample] @ factors.item.T,
            )
            blocks.append(
                Dimensions.for_users_with_history(
                    scale * history, factors.item, len(user_embeddings), len(item_embeddings)
                )
            )
            report.update(item_item="blended", item_item_rank=factors.rank, item_item_scale=scale)
    if blend.segment_weight > 0 and data.segment_popularity:
        keys, shares = segment_shares(data.segment_popularity, len(data.items))
        by_feature = _segment_columns(data.user_feature_names, keys)
        rows = _demographic_rows(data, by_feature, seed)
        scale = blend.segment_weight * spread_ratio(
            (rows @ user_embeddings) @ item_vectors.T + item_biases, (rows @ by_feature) @ shares.T
        )
        blocks.append(
            Dimensions.for_user_features(
                scale * by_feature, shares, len(data.users), len(item_embeddings)
            )
        )
        report.update(segment_prior="blended", segments=len(keys), segment_scale=scale)
    if blocks:
        user_vectors, item_vectors, user_embeddings, item_embeddings = appended(
            user_vectors, item_vectors, user_embeddings, item_embeddings, blocks
        )
    return ServedArrays(
        user_vectors, item_vectors, item_biases, user_embeddings, item_embeddings, report
    )


def _segment_columns(feature_names: list[str], keys: list[str]) -> np.ndarray:
    """(n_user_features, n_segments): 1 where a feature names a segment (`age_group:25-34`)."""
    column = {key: c for c, key in enumerate(keys)}
    out = np.zeros((len(feature_names), len(keys)), dtype=np.float32)
    for row, name in enumerate(feature_names):
        if not name.startswith(USER_IDENTITY_PREFIX):
            key = segment_key(*name.partition(":")[::2])
            if key in column:
                out[row, column[key]] = 1.0
    return out


def _demographic_rows(data: TrainingData, by_feature: np.ndarray, seed: int) -> sp.csr_matrix:
    """A fixed sample of users with segments, as a customer known only by demographics would be
    represented: their segment features, normalised to sum 1 (n_sample × n_user_features)."""
    segment_features = sp.diags((by_feature.sum(axis=1) > 0).astype(np.float32))
    demographic = sp.csr_matrix(sp.csr_matrix(data.user_features) @ segment_features)
    demographic.eliminate_zeros()
    demographic.data[:] = 1.0
    rows = demographic[sample_rows(np.flatnonzero(np.diff(demographic.indptr) > 0), seed)]
    return sp.csr_matrix(sp.diags(1.0 / np.diff(rows.indptr)) @ rows)


def validation_metrics(
    data: TrainingData, params: TrainingParams, fraction: float
) -> dict[str, Any]:
    """`params` fitted without a held-out share of each user's interactions and measured on it
    exactly as served (blend included): precision@k with the user's training items excluded."""
    kept, held_out = split_interactions(data.interactions, fraction, seed=params.model.random_state)
    if not held_out.nnz:
        return {}
    probe_data = replace(data, interactions=kept)
    arrays = served_arrays(fit_model(probe_data, params), probe_data, params)
    k = params.model.eval_k
    return {
        f"validation_precision@{k}": precision_at_k(
            arrays.user_vectors, arrays.item_vectors, arrays.item_biases, held_out, kept, k
        ),
        "validation_interactions": int(held_out.nnz),
    }


def _check_features(data: TrainingData, params: TrainingParams) -> None:
    """The pipeline mixed the feature rows; they must be mixed as the params say."""
    for name in FEATURE_FIELDS:
        if getattr(data.feature_config, name) != getattr(params.features, name):
            raise ValueError(
                f"the training data was built with {name}={getattr(data.feature_config, name)}, "
                f"the params say {getattr(params.features, name)}: build it with params.features"
            )


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
    params: TrainingParams,
    metrics: dict[str, Any] | None = None,
    item_item: ItemItemFactors | None = None,
) -> EmbeddingIndex:
    """Representations computed once from the feature matrices, plus everything serving needs."""
    arrays = served_arrays(model, data, params, item_item)
    item_matrix = np.empty((len(data.items), arrays.item_vectors.shape[1] + 1), dtype=np.float32)
    item_matrix[:, :-1] = arrays.item_vectors
    item_matrix[:, -1] = arrays.item_biases

    categories, category_codes = _codes([data.item_meta[i]["category"] for i in data.items])
    institutions, institution_codes = _codes([data.item_meta[i]["institution"] for i in data.items])
    segment_keys = sorted(data.segment_popularity)
    segment_popularity = np.zeros((len(segment_keys), len(data.items)), dtype=np.float32)
    for row, key in enumerate(segment_keys):
        segment_popularity[row] = data.segment_popularity[key]
    seen = sp.csr_matrix(data.interactions)
    seen.sort_indices()
    user_features = sp.csr_matrix(data.user_features, dtype=np.float32)
    item_features = sp.csr_matrix(data.item_features, dtype=np.float32)
    start, end = data.data_window
    return EmbeddingIndex(
        users=data.users,
        items=data.items,
        user_vectors=arrays.user_vectors,
        item_matrix=item_matrix,
        user_feature_names=data.user_feature_names,
        user_feature_embeddings=arrays.user_feature_embeddings,
        user_feature_biases=model.user_biases,
        item_feature_names=data.item_feature_names,
        item_feature_embeddings=arrays.item_feature_embeddings,
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
        user_feature_indptr=user_features.indptr.astype(np.int64),
        user_feature_indices=user_features.indices.astype(np.int32),
        user_feature_weights=user_features.data,
        item_feature_indptr=item_features.indptr.astype(np.int64),
        item_feature_indices=item_features.indices.astype(np.int32),
        item_feature_weights=item_features.data,
        feature_config=data.feature_config,
        params={
            **params.to_dict(),
            "features": data.feature_config.to_dict(),
            "weighting": data.weighting.to_dict(),
            "source": params.source,
        },
        metrics={**(metrics or {}), **arrays.blend},
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
