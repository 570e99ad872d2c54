"""The harness end to end on tiny data: metric plumbing by hand, then real models."""

import sys

import numpy as np
import pytest

from finverse_reco.evaluation.datasets import load_interactions_csv
from finverse_reco.evaluation.harness import RankingTask, evaluate, table_lines
from finverse_reco.evaluation.protocols import Split


def test_ranking_task_excludes_training_items_and_counts_by_hand(tmp_path):
    path = tmp_path / "i.csv"
    # user a: trained on x, held out y; user b: trained on y, held out z
    path.write_text("user_id,item_id\na,x\na,y\nb,y\nb,z\n")
    data = load_interactions_csv(path)
    test = np.array([False, True, False, True])
    task = RankingTask.from_split(data, Split(train=~test, test=test, candidates=None), k=1)
    # Everyone scores x > y > z: a's best unseen is y (hit), b's is x (miss).
    metrics = task.measure(lambda users: np.tile([3.0, 2.0, 1.0], (len(users), 1)))
    assert metrics["precision@1"] == pytest.approx(0.5)
    assert metrics["coverage"] == pytest.approx(2 / 3)
    # AUC: a's positive y vs negative z → 1; b's positive z vs negative x → 0.
    assert metrics["auc"] == pytest.approx(0.5)


def test_candidates_restrict_what_is_ranked(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("user_id,item_id\na,x\na,y\na,z\n")
    data = load_interactions_csv(path)
    test = np.array([False, False, True])
    split = Split(train=~test, test=test, candidates=np.array([2]))
    task = RankingTask.from_split(data, split, k=1)
    # z scores lowest of all items but is the only candidate: always a hit.
    metrics = task.measure(lambda users: np.tile([3.0, 2.0, 1.0], (len(users), 1)))
    assert metrics["precision@1"] == 1.0 and metrics["coverage"] == 1.0


def test_models_learn_the_tastes_and_the_json_has_the_documented_form(clustered):
    result = evaluate(clustered, "holdout", seed=3, k=5, models=["popularity", "lightfm-cf"])
    assert (result["dataset"], result["protocol"], result["seed"]) == ("interactions", "holdout", 3)
    rows = {row["model"]: row for row in result["results"]}
    keys = {"precision@5", "recall@5", "ndcg@5", "map@5", "auc", "coverage", "fit_seconds"}
    assert keys <= set(rows["lightfm-cf"])
    # Popularity recommends the same items to both tastes; LightFM separates them.
    assert rows["lightfm-cf"]["auc"] > rows["popularity"]["auc"]
    assert rows["lightfm-cf"]["coverage"] > rows["popularity"]["coverage"]
    assert table_lines(result)[0].startswith("interactions / holdout / seed 3")


def test_the_hybrid_row_is_what_train_fits_on_the_services_own_data():
    """With every pair in training, the demo view is the pipeline's data for the same events,
    and the hybrid row's index is `train`'s on it, array for array."""
    from dataclasses import replace

    from finverse_reco.demo import generate_world
    from finverse_reco.evaluation.datasets import demo_dataset
    from finverse_reco.evaluation.recommenders import Hybrid
    from finverse_reco.model import ModelParams, TrainingParams, train
    from finverse_reco.pipeline import FeatureConfig, WeightingConfig, build_training_data

    size = {"n_users": 60, "n_products": 30, "n_events": 1500}
    dataset = demo_dataset(5, **size)
    features = FeatureConfig(user_identity_weight=0.7, item_identity_weight=0.4)
    params = TrainingParams(ModelParams(no_components=8, epochs=3, num_threads=1), features)
    view = dataset.train_view(np.ones(len(dataset.users), dtype=bool), features)
    world = generate_world(5, **size)
    served_data = build_training_data(
        [world.events], world.products, WeightingConfig(), feature_config=features
    )
    for name in ("user_features", "item_features"):
        np.testing.assert_array_equal(
            getattr(view.data, name).toarray(), getattr(served_data, name).toarray()
        )
    assert view.data.user_feature_names == served_data.user_feature_names
    np.testing.assert_array_equal(
        view.data.interactions.toarray(), served_data.interactions.toarray()
    )

    hybrid = Hybrid(params, dataset.user_labels).fit(view)
    served = train(served_data, replace(params))
    np.testing.assert_array_equal(hybrid.index.user_vectors, served.user_vectors)
    np.testing.assert_array_equal(hybrid.index.item_matrix, served.item_matrix)


def test_cold_users_are_scored_by_their_features_as_the_service_does(clustered):
    from finverse_reco.model import ModelParams, TrainingParams

    params = TrainingParams(ModelParams(no_components=8, epochs=30, num_threads=1, random_state=1))
    result = evaluate(
        clustered, "cold-user", seed=1, k=5, params=params, models=["popularity", "hybrid"]
    )
    rows = {row["model"]: row for row in result["results"]}
    assert rows["hybrid"]["chosen"]["params"] == "defaults" == result["params"]
    # Held-out users are known only by their taste: features must beat popularity.
    assert rows["hybrid"]["precision@5"] > rows["popularity"]["precision@5"]


def test_missing_extra_is_reported_not_fatal(clustered, monkeypatch):
    monkeypatch.setitem(sys.modules, "implicit", None)  # as if the bench extra were absent
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    result = evaluate(clustered, "holdout", seed=0, models=["popularity", "implicit-als"])
    assert result["results"][1]["model"] == "implicit-als"
    assert result["results"][1]["status"].startswith("not installed")
    assert "precision@10" in result["results"][0]
