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
    """`top_k[u]` the ranked item indices recommended to user u; `relevant[u]` its held-out items.

    Users with no relevant items are left out of the averages.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, recall, ndcg, average_precision = [], [], [], []
    for ranked, truth in zip(top_k, relevant, strict=True):
        if len(truth) == 0:
            continue
        hits = np.isin(ranked[:k], truth)
        n_hits = int(hits.sum())
        ideal = min(len(truth), k)
        precision.append(n_hits / k)
        recall.append(n_hits / len(truth))
        ndcg.append(float(discounts[:k][hits[:k]].sum() / discounts[:ideal].sum()))
        cumulative_hits = np.cumsum(hits)
        precision_at_hits = cumulative_hits[hits] / (np.flatnonzero(hits) + 1)
        average_precision.append(float(precision_at_hits.sum() / ideal))
    recommended = np.unique(top_k[:, :k]) if len(top_k) else np.array([])
    recommended = recommended[recommended >= 0]  # -1 pads a list shorter than k
    return {
        f"precision@{k}": float(np.mean(precision)) if precision else 0.0,
        f"recall@{k}": float(np.mean(recall)) if recall else 0.0,
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
        f"map@{k}": float(np.mean(average_precision)) if average_precision else 0.0,
        "coverage": len(recommended) / n_items if n_items else 0.0,
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
