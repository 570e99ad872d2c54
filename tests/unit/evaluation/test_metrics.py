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


def test_metrics_agree_with_cornac_on_a_fixed_example(tmp_path):
    """The harness end to end (split, exclusion of training items, top-k, metrics) against
    Cornac's independent implementation, on random scores without ties (Cornac counts a tied
    pair as a loss in AUC; we count it as half)."""
    from cornac.metrics import AUC, MAP, NDCG, Precision, Recall

    from finverse_reco.evaluation.datasets import load_interactions_csv
    from finverse_reco.evaluation.harness import RankingTask
    from finverse_reco.evaluation.protocols import Split

    rng = np.random.default_rng(20)
    n_users, n_items = 9, 17
    pairs = [
        (u, i)
        for u in range(n_users)
        for i in rng.choice(n_items, size=int(rng.integers(3, 12)), replace=False)
    ]
    (tmp_path / "i.csv").write_text(
        "user_id,item_id\n"
        + "".join(f"u{u},i{i:02d}\n" for u, i in pairs)
        + "".join(f"nobody,i{i:02d}\n" for i in range(n_items))  # every item exists
    )
    data = load_interactions_csv(tmp_path / "i.csv")
    test = (rng.random(len(data.users)) < 0.4) & (data.users != data.user_ids.row("nobody"))
    split = Split(train=~test, test=test, candidates=None)
    scores = rng.random((data.n_users, data.n_items))

    def ours(k: int) -> dict[str, float]:
        return RankingTask.from_split(data, split, k).measure(lambda users: scores[users])

    expected: dict[str, list[float]] = {
        "precision": [],
        "recall": [],
        "ndcg": [],
        "auc": [],
        "map": [],
    }
    for user in np.unique(data.users[test]):
        positives = data.items[test & (data.users == user)]
        candidates = np.setdiff1d(np.arange(data.n_items), data.items[~test & (data.users == user)])
        ranked = candidates[np.argsort(-scores[user, candidates])]
        negatives = np.setdiff1d(candidates, positives)
        expected["precision"].append(Precision(k=5).compute(positives, ranked))
        expected["recall"].append(Recall(k=5).compute(positives, ranked))
        expected["ndcg"].append(NDCG(k=5).compute(positives, ranked))
        expected["auc"].append(
            AUC().compute(candidates, scores[user, candidates], positives, negatives)
        )
        expected["map"].append(MAP().compute(candidates, scores[user, candidates], positives))

    at_5, whole_list = ours(5), ours(data.n_items)
    assert at_5["precision@5"] == pytest.approx(np.mean(expected["precision"]))
    assert at_5["recall@5"] == pytest.approx(np.mean(expected["recall"]))
    assert at_5["ndcg@5"] == pytest.approx(np.mean(expected["ndcg"]))
    assert at_5["auc"] == pytest.approx(np.mean(expected["auc"]))
    # Cornac's MAP is over the whole ranking: ours at k = every item is the same quantity.
    assert whole_list[f"map@{data.n_items}"] == pytest.approx(np.mean(expected["map"]))


def test_fewer_candidates_than_k_count_empty_places_as_misses():
    top = np.array([[2, 0, -1, -1]])
    m = ranking_metrics(top, [np.array([0])], k=4, n_items=3)
    assert m["precision@4"] == pytest.approx(1 / 4)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3)) / 1.0)
    assert m["coverage"] == pytest.approx(2 / 3)
