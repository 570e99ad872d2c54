"""Vectorised categorical draws, one distribution per row."""

from __future__ import annotations

import numpy as np


def draw_rows(
    rng: np.random.Generator, weights: np.ndarray, per_row: int | None = None
) -> np.ndarray:
    """Column indices drawn from each row of a (n, k) non-negative weight matrix.

    Returns shape (n,) when `per_row` is None, else (n, per_row) independent draws per row.
    """
    cumulative = np.cumsum(weights, axis=1)
    shape = (len(weights),) if per_row is None else (len(weights), per_row)
    draws = rng.random(shape) * cumulative[:, -1].reshape((-1,) + (1,) * (len(shape) - 1))
    if per_row is None:
        picked = (cumulative <= draws[:, None]).sum(axis=1)
    else:
        picked = (cumulative[:, None, :] <= draws[:, :, None]).sum(axis=2)
    return np.minimum(picked, weights.shape[1] - 1)
