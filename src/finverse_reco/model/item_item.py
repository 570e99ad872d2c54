"""The item-item part of the served score: EASE, reduced to factors that serve as extra dimensions.

EASE (Steck 2019, "Embarrassingly Shallow Autoencoders") scores a user's items as `x_u · B`, where
`x_u` is the user's binary history and `B` the closed-form ridge regression of every item on the
others (zero diagonal): `P = (XᵀX + l2·I)⁻¹`, `B = I − P · diag(1 / diag(P))`. It is a strong
baseline on small catalogs and complements LightFM's factors.

Served, it must not change how the index ranks: the truncated SVD `B ≈ Q Rᵀ` (rank r) turns the
item-item score into a dot product (`model/blend.py` appends it to the served arrays).
Arrays in, arrays out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg


def ease_weights(interactions: sp.spmatrix, l2: float) -> np.ndarray:
    """B (n_items × n_items, float64, zero diagonal) from the binary user × item matrix."""
    binary = binary_history(interactions)
    gram = (binary.T @ binary).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights = precision / -np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights


@dataclass(frozen=True)
class ItemItemFactors:
    """B ≈ query @ item.T: `query` (n_items, r) is summed over a user's history, `item` (n_items, r)
    is each item's side of the dot product."""

    query: np.ndarray
    item: np.ndarray

    @classmethod
    def fit(cls, interactions: sp.spmatrix, l2: float, rank: int) -> ItemItemFactors:
        weights = ease_weights(interactions, l2)
        n = weights.shape[0]
        if rank < n - 1:
            # The top `rank` singular triplets only (ARPACK; a fixed start vector makes it
            # deterministic): ~5x cheaper than the full SVD at 1,700 items.
            left, singular, right_t = scipy.sparse.linalg.svds(
                weights, k=rank, v0=np.full(n, 1.0 / np.sqrt(n)), solver="arpack"
            )
            order = np.argsort(-singular, kind="stable")
            left, singular, right_t = left[:, order], singular[order], right_t[order]
        else:
            left, singular, right_t = scipy.linalg.svd(weights, check_finite=False)
            rank = n
        return cls(
            query=np.ascontiguousarray(left[:, :rank] * singular[:rank], dtype=np.float32),
            item=np.ascontiguousarray(right_t[:rank].T, dtype=np.float32),
        )

    @property
    def rank(self) -> int:
        return self.query.shape[1]

    def user_part(self, history: sp.spmatrix) -> np.ndarray:
        """(n_users, r): each user's binary history summed over `query`."""
        return np.asarray(binary_history(history) @ self.query, dtype=np.float32)


def binary_history(matrix: sp.spmatrix) -> sp.csr_matrix:
    """1.0 wherever a user touched an item (float64 csr)."""
    binary = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary
