"""`evaluate` with the policy: quality on and off against the truth the policy allows, and the
violations of each list (the demo world knows its customers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from finverse_reco.evaluation.datasets import demo_dataset
from finverse_reco.evaluation.harness import evaluate, table_lines
from finverse_reco.evaluation.policy import PolicyMeasure
from finverse_reco.evaluation.protocols import split_pairs
from finverse_reco.model import ModelParams, TrainingParams
from finverse_reco.policy import Policy, load_rules


@pytest.fixture(scope="module")
def dataset():
    return demo_dataset(11, n_users=300, n_products=80, n_events=12_000)


def test_the_policy_costs_little_precision_and_its_lists_break_no_rule(dataset) -> None:
    params = TrainingParams(ModelParams(no_components=16, epochs=15, num_threads=1))
    result = evaluate(
        dataset,
        "holdout",
        seed=3,
        params=params,
        models=["hybrid", "popularity"],
        policy=Policy(load_rules()),
    )
    for row in result["results"]:
        measured = row["policy"]
        assert measured["violations_on"] == 0
        assert measured["violations_off"] > 0  # the model alone does recommend forbidden products
        assert measured["precision@10_on"] >= 0.9 * measured["precision@10_off"], measured
        assert measured["eligible_test_pairs"] > 0
    assert any("violations on" in line for line in table_lines(result))


def test_the_allowed_pairs_are_the_rules_own(dataset) -> None:
    """Every pair the measure allows passes the rules: checked through the service's own filters
    for a few customers, and the holdings of each customer are never allowed."""
    policy = Policy(load_rules())
    measure = PolicyMeasure(dataset, dataset.customers, policy)
    profiles = dataset.customers.profiles
    for row, user_id in enumerate(dataset.user_ids.ids[:50]):
        held = [dataset.item_ids.row(p) for p in profiles[user_id].holdings]
        held = [r for r in held if r is not None and dataset.customers.products[
            dataset.item_ids.id(r)].category != "insurance"]  # fmt: skip
        assert not measure.allowed[row, held].any()
    assert 0.3 < measure.allowed.mean() < 1.0


def test_no_policy_without_customers(dataset) -> None:
    split = split_pairs("holdout", dataset.users, dataset.items, dataset.timestamps, 1)
    assert split.test.any()
    bare = replace(dataset, customers=None)
    result = evaluate(bare, "holdout", seed=1, models=["popularity"], policy=Policy(load_rules()))
    assert "policy" not in result["results"][0]
    assert np.isfinite(result["results"][0]["precision@10"])
