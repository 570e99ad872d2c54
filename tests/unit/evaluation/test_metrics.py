"""Metric values computed by hand on tiny cases."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from finverse_reco.evaluation.metrics import ranking_metrics, top_k_excluding, user_auc


def test_precision_recall_ndcg_map_by_hand():
    # user 0: ranked [5, 1, 7], relevant {1, 9}: one hit at position 2
    # user 1: ranked [2, 3, 4], relevant {2, 4}: hits at positions 1 and 3
    top_k = np.array([[5, 1, 7], [2, 3, 4]])
    relevant = [np.array([1, 9]), np.array([2, 4])]
    m = ranking_metrics(top_k, relevant, k=3, n_items=10)

    assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    ideal = 1 + 1 / math.log2(3)
    ndcg0 = (1 / math.log2(3)) / ideal
    ndcg1 = (1 + 1 / math.log2(4)) / ideal
    assert m["ndcg@3"] == pytest.approx((ndcg0 + ndcg1) / 2)
    ap0 = (1 / 2) / 2
    ap1 = (1 / 1 + 2 / 3) / 2
    assert m["map@3"] == pytest.approx((ap0 + ap1) / 2)
    assert m["coverage"] == pytest.approx(6 / 10)


def test_users_without_relevant_items_are_left_out():
    m = ranking_metrics(np.array([[0, 1], [2, 3]]), [np.array([0]), np.array([])], k=2, n_items=4)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1.0)


def test_auc_by_hand_with_ties_and_exclusions():
    scores = np.array([0.9, 0.5, 0.5, 0.1, 0.8])
    # positives {1}; excluded {4}; negatives {0, 2, 3}: beats 3, ties 2, loses to 0 → 1.5 / 3
    assert user_auc(scores, np.array([1]), np.array([4])) == pytest.approx(0.5)
    assert user_auc(scores, np.array([0]), np.array([])) == pytest.approx(1.0)
    assert user_auc(scores, np.array([]), np.array([])) is None


def test_top_k_excluding_removes_seen_and_orders_by_score():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0]]))
    assert top_k_excluding(scores, seen, 2).tolist() == [[3, 2], [1, 2]]
