"""The group report: exposure shares and precision per group with the best/worst ratio."""

import math

import numpy as np

from finverse_reco.evaluation.fairness import exposure_shares, fairness_report, group_precision


def test_exposure_counts_every_place_and_splits_multi_category_items():
    top = np.array([[0, 1], [0, 2], [1, -1]])  # candidate positions; -1: an empty place
    candidates = np.array([10, 11, 12])
    categories = {10: ("cards",), 11: ("loans", "cards"), 12: ()}
    by_row = [categories.get(row, ()) for row in range(13)]
    shares = exposure_shares(top, candidates, by_row)
    # places: 10 twice (cards 2), 11 twice (cards 1, loans 1), 12 once (no category: not counted)
    assert shares == {"cards": 0.75, "loans": 0.25}


def test_group_precision_and_the_ratio_over_groups_big_enough():
    labels = [{"gender": "F"}, {"gender": "F"}, {"gender": "M"}, {"gender": "M"}, {"gender": "X"}]
    precision = np.array([0.4, 0.2, 0.1, 0.1, 0.9])
    report = group_precision(precision, np.arange(5), labels, min_users=2)["gender"]
    assert report["groups"]["F"] == {"users": 2, "precision": 0.3}
    assert report["groups"]["X"] == {"users": 1, "precision": 0.9}  # listed, not in the ratio
    assert (report["best"], report["worst"]) == (0.3, 0.1)
    assert report["best_worst_ratio"] == 3.0


def test_a_group_served_nothing_right_makes_the_ratio_infinite():
    labels = [{"age": "a"}, {"age": "b"}]
    report = group_precision(np.array([0.5, 0.0]), np.arange(2), labels, min_users=1)
    assert math.isinf(report["age"]["best_worst_ratio"])


def test_report_divides_hits_by_k():
    report = fairness_report(
        np.array([[0, 1]]),
        np.array([1]),
        np.array([0]),
        np.array([0, 1]),
        [{"gender": "F"}],
        [("a",), ("b",)],
        2,
        min_users=1,
    )
    assert report["groups"]["gender"]["groups"]["F"]["precision"] == 0.5
    assert report["exposure_share"] == {"a": 0.5, "b": 0.5}
