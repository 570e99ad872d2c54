"""Ranking quality computed from embeddings, exactly as serving scores (vector · item + bias)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from finverse_reco.index.topk import topk_of_scores

_CHUNK_USERS = 1024  # bounds the dense score block to 1024 × n_items floats


def precision_at_k(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    item_biases: np.ndarray,
    test: sp.spmatrix,
    train: sp.spmatrix | None,
    k: int,
) -> float:
    """Mean over users with test positives of |top-k ∩ test| / k; training positives are not
    candidates (a served list excludes what the user has already seen)."""
    test = sp.csr_matrix(test)
    train = sp.csr_matrix(train) if train is not None else None
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if len(users) == 0:
        return 0.0
    n_items = item_vectors.shape[0]
    k = min(k, n_items)
    hits = 0
    for start in range(0, len(users), _CHUNK_USERS):
        chunk = users[start : start + _CHUNK_USERS]
        scores = user_vectors[chunk] @ item_vectors.T
        scores += item_biases
        seen = train[chunk] if train is not None else None
        top = topk_of_scores(scores, k, exclude=seen).rows
        relevant = test[chunk]
        for row, candidates in enumerate(top):
            positives = relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]]
            hits += int(np.isin(candidates, positives, assume_unique=True).sum())
    return hits / (k * len(users))
