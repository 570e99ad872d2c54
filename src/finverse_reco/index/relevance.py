"""`relevanceScore`: each strategy's raw score mapped into [0, 1], never decreasing with the score.

Raw scores do not compare across strategies or customers: a personalised dot product is ~3–4, a
popularity weight ~4,000, a cosine in [-1, 1]. The mappings:

- dot products (personalised, session, cold start): Φ(z), where z is the item's standard score
  among the scores of the *whole catalog* for the same query and Φ the normal distribution
  function: roughly the share of the catalog it outscores. The catalog's mean and variance for a
  query are exact and cost O(d²), not a pass over the catalog: `q · μ` and `qᵀ Σ q` with the item
  rows' mean μ and covariance Σ, computed once per index (`ScoreMoments`).
- cosines (similar products): `(1 + cos) / 2`.
- popularity: the score over the largest score among all items (the most popular product is 1).

Each is a fixed increasing function of the raw score for one request, so the relevance never
rises down a list. Rounding can make neighbours equal (Φ is 1.0 beyond z ≈ 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ScoreMoments:
    """Mean (d + 1,) and covariance (d + 1, d + 1) of the item rows (float32; computed in
    float64)."""

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def of(cls, item_matrix: np.ndarray) -> ScoreMoments:
        rows = np.asarray(item_matrix, dtype=np.float64)
        width = rows.shape[1]
        if not len(rows):
            return cls(np.zeros(width, np.float32), np.zeros((width, width), np.float32))
        mean = rows.mean(axis=0)
        centred = rows - mean
        covariance = centred.T @ centred / len(rows)
        return cls(mean.astype(np.float32), covariance.astype(np.float32))


def dot_relevance(query: np.ndarray, scores: np.ndarray, moments: ScoreMoments) -> list[float]:
    """Φ((score − q·μ) / √(qᵀΣq)) for one query's scores; 0.5 each when the catalog's scores
    do not vary for this query. A list of ten: plain floats and `math.erfc` beat numpy calls."""
    variance = float(query @ (moments.covariance @ query))
    if variance <= 0.0:
        return [0.5] * len(scores)
    centre = float(query @ moments.mean)
    scale = -1.0 / math.sqrt(2.0 * variance)  # Φ(z) = erfc(−z / √2) / 2
    return [0.5 * math.erfc((score - centre) * scale) for score in np.asarray(scores).tolist()]


def cosine_relevance(scores: np.ndarray) -> list[float]:
    return [min(max((score + 1.0) / 2.0, 0.0), 1.0) for score in np.asarray(scores).tolist()]


def share_relevance(scores: np.ndarray, largest: float) -> list[float]:
    """Scores over the largest score of all items (popularity weights are never negative)."""
    if largest <= 0:
        return [0.0] * len(scores)
    return [min(max(score / largest, 0.0), 1.0) for score in np.asarray(scores).tolist()]
