"""Loading datasets from files, and the training views built from a split."""

from pathlib import Path

import numpy as np
import pytest

from finverse_reco.evaluation.datasets import (
    DatasetError,
    load_interactions_csv,
    load_movielens_100k,
)
from finverse_reco.pipeline import FeatureConfig


def test_csv_sums_duplicate_pairs_and_keeps_the_first_time(tmp_path: Path):
    path = tmp_path / "i.csv"
    path.write_text(
        "user_id,item_id,weight,timestamp\n"
        "b,x,2,2026-01-02T00:00:00Z\n"
        "a,y,1,100\n"
        "b,x,0.5,2026-01-01T00:00:00Z\n"
    )
    data = load_interactions_csv(path)
    assert data.user_ids.ids == ("a", "b") and data.item_ids.ids == ("x", "y")
    matrix = data.pair_matrix(np.ones(len(data.users), dtype=bool)).toarray()
    np.testing.assert_allclose(matrix, [[0, 1], [2.5, 0]])
    b_x = np.flatnonzero((data.users == 1) & (data.items == 0))[0]
    assert data.timestamps[b_x] == pytest.approx(1767225600.0)  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,item_id\na,b\n", "missing column"),
        ("user_id,item_id,weight\na,b,-1\n", "weight"),
        ("user_id,item_id,weight\na,b,many\n", "weight"),
        ("user_id,item_id,timestamp\na,b,yesterday\n", "timestamp"),
        ("user_id,item_id\n,b\n", "empty user_id"),
    ],
)
def test_bad_csv_names_the_problem(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_interactions_csv(path)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="not found"):
        load_interactions_csv(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="not found"):
        load_movielens_100k(tmp_path)


def test_train_view_is_the_pipelines_training_data_for_the_training_pairs(clustered_csv):
    data = load_interactions_csv(
        clustered_csv["interactions"],
        user_features=clustered_csv["user_features"],
        item_features=clustered_csv["item_features"],
    )
    u07 = data.user_ids.row("u07")
    i05 = data.item_ids.row("i05")
    train = (data.items != i05) & (data.users != u07)  # nobody trains on i05, u07 is held out
    features = FeatureConfig(user_identity_weight=0.8, item_identity_weight=0.6)
    view = data.train_view(train, features)
    assert view.interactions.nnz == int(train.sum())
    training = view.data
    assert training.feature_config == features
    # The service knows only users with history; every item is in the catalog.
    assert view.user_rows[u07] == -1 and "u07" not in training.users
    assert len(training.items) == data.n_items
    row = training.items.row("i05")
    names = set(training.item_feature_names.ids_of(training.item_features[row].indices))
    assert names == {"group:a"}  # no identity without training pairs
    u00 = training.user_features[training.users.row("u00")]
    weights = {
        training.user_feature_names.id(c): w for c, w in zip(u00.indices, u00.data, strict=True)
    }
    assert weights == pytest.approx({"user:u00": 0.8, "taste:a": 0.2})
    assert data.user_labels[u07] == {"taste": "b"}
    assert set(training.segment_popularity) == {"taste=a", "taste=b"}


def test_movielens_files_become_pairs_and_features(tmp_path: Path):
    (tmp_path / "u.data").write_text(
        "1\t10\t5\t881250949\n2\t10\t3\t891717742\n1\t20\t4\t878887116\n"
    )
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    genres = "|".join("1" if g == 7 else "0" for g in range(19))
    (tmp_path / "u.item").write_text(
        f"10|A (1995)|01-Jan-1995||url|{genres}\n20|B (1977)|01-Jan-1977||url|{genres}\n"
    )
    data = load_movielens_100k(tmp_path)
    assert data.user_ids.ids == ("1", "2") and data.item_ids.ids == ("10", "20")
    assert len(data.users) == 3 and (data.weights == 1).all()
    view = data.train_view(np.ones(3, dtype=bool))
    assert "occupation:technician" in view.data.user_feature_names
    assert {"genre:7", "decade:1970", "decade:1990"} <= set(view.data.item_feature_names)
    assert data.user_labels[0]["age_band"] == "1"  # 24 is in the 18-24 band


def test_demo_views_never_train_on_test_pairs_and_know_cold_users_by_demographics():
    from finverse_reco.evaluation.datasets import demo_dataset
    from finverse_reco.evaluation.protocols import split_pairs

    data = demo_dataset(7, n_users=80, n_products=40, n_events=2000)
    split = split_pairs("cold-user", data.users, data.items, data.timestamps, seed=0)
    view = data.train_view(split.train)
    trained = view.interactions.tocoo()
    allowed = set(
        zip(data.users[split.train].tolist(), data.items[split.train].tolist(), strict=True)
    )
    assert set(zip(trained.row.tolist(), trained.col.tolist(), strict=True)) <= allowed
    cold = np.unique(data.users[split.test])
    assert (view.user_rows[cold] == -1).all()
    for row in cold:
        labels = data.user_labels[row]
        assert labels and set(labels) <= {"age_group", "income_range", "location"}
