"""Ranking metrics at k over held-out interactions. Arrays in, numbers out.

Definitions (binary relevance, averaged over users with at least one held-out item):
- precision@k = hits / k; recall@k = hits / |relevant|
- NDCG@k = DCG / ideal DCG, DCG = sum over hit positions i (1-based) of 1 / log2(i + 1),
  ideal over min(|relevant|, k) hits
- MAP@k = sum over hit positions i of precision@i, divided by min(|relevant|, k)
- AUC = probability that a held-out item outscores a random item the user never touched
  (train and held-out items excluded from the negatives), ties counting one half
- coverage = distinct items recommended to anyone / catalog size
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from finverse_reco.index import topk_of_scores


def ranking_metrics(
    top_k: np.ndarray, relevant: Sequence[np.ndarray], k: int, n_items: int
) -> dict[str, float]:
    """`top_k[u]` the ranked item indices recommended to user u (-1: an empty place, a miss);
    `relevant[u]` its held-out items.

    Users with no relevant items are left out of the averages. One pass over all users at once.
    """
    top_k = np.asarray(top_k, dtype=np.int64).reshape(len(relevant), -1)[:, :k]
    places = np.full((len(relevant), k), -1, dtype=np.int64)
    places[:, : top_k.shape[1]] = top_k
    n_relevant = np.fromiter((len(r) for r in relevant), np.int64, len(relevant))
    users = np.flatnonzero(n_relevant)
    recommended = np.unique(places)
    coverage = np.count_nonzero(recommended >= 0) / n_items if n_items else 0.0
    if len(users) == 0:
        return dict.fromkeys((f"{m}@{k}" for m in ("precision", "recall", "ndcg", "map")), 0.0) | {
            "coverage": coverage
        }
    width = max(n_items, int(places.max()) + 1, 1)
    relevant_keys = np.concatenate(
        [user * width + np.asarray(relevant[user], dtype=np.int64) for user in users]
    )
    listed = places[users]
    keys = np.where(listed >= 0, users[:, None] * width + listed, -1)
    hits = np.isin(keys, relevant_keys)
    n_hits = hits.sum(axis=1)
    ideal = np.minimum(n_relevant[users], k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_dcg = np.cumsum(discounts)[ideal - 1]
    precision_at_hits = np.cumsum(hits, axis=1) / np.arange(1, k + 1) * hits
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / n_relevant[users])),
        f"ndcg@{k}": float(np.mean((hits * discounts).sum(axis=1) / ideal_dcg)),
        f"map@{k}": float(np.mean(precision_at_hits.sum(axis=1) / ideal)),
        "coverage": coverage,
    }


def user_auc(scores: np.ndarray, positives: np.ndarray, excluded: np.ndarray) -> float | None:
    """AUC of one user's scores: positives against every item neither positive nor excluded."""
    positives = np.asarray(positives, dtype=np.int64)
    candidates = np.ones(len(scores), dtype=bool)
    candidates[np.asarray(excluded, dtype=np.int64)] = False
    candidates[positives] = False
    negatives = np.flatnonzero(candidates)
    if len(positives) == 0 or len(negatives) == 0:
        return None
    pool = np.concatenate([scores[positives], scores[negatives]])
    ranks = rankdata(pool)  # average ranks: ties count one half
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_k_excluding(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Top-k item indices per row of a dense score matrix, with excluded (user, item) pairs removed
    (the service's own kernel, `index.topk`); a row with fewer candidates is padded with -1."""
    block = np.array(scores, dtype=np.float64, copy=True)
    return topk_of_scores(block, k, exclude=exclude).rows
