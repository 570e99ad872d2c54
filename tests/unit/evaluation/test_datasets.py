"""Loading datasets from files, and the training views built from a split."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from finverse_reco.evaluation.datasets import (
    DatasetError,
    load_interactions_csv,
    load_movielens_100k,
)
from finverse_reco.evaluation.recommenders import feature_rows


def test_csv_sums_duplicate_pairs_and_keeps_the_first_time(tmp_path: Path):
    path = tmp_path / "i.csv"
    path.write_text(
        "user_id,item_id,weight,timestamp\n"
        "b,x,2,2026-01-02T00:00:00Z\n"
        "a,y,1,100\n"
        "b,x,0.5,2026-01-01T00:00:00Z\n"
    )
    data = load_interactions_csv(path)
    assert data.user_ids == ("a", "b") and data.item_ids == ("x", "y")
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


def test_train_view_has_identity_only_for_entities_with_training_pairs(clustered_csv):
    data = load_interactions_csv(
        clustered_csv["interactions"],
        user_features=clustered_csv["user_features"],
        item_features=clustered_csv["item_features"],
    )
    train = data.items != data.item_ids.index("i05")  # nobody trains on i05
    view = data.train_view(train)
    assert view.interactions.nnz == int(train.sum())
    i05 = data.item_ids.index("i05")
    assert view.item_identity[i05].nnz == 0 and view.item_side[i05].nnz == 1
    assert view.user_side_names == ("taste:a", "taste:b")
    np.testing.assert_allclose(np.asarray(view.user_side.sum(axis=1)).ravel(), 1.0)


def test_feature_rows_share_the_row_between_identity_and_side():
    identity = sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32))
    side = sp.csr_matrix(np.array([[0.5, 0.5], [1, 0]], dtype=np.float32))
    rows = feature_rows(identity, side, 0.25).toarray()
    np.testing.assert_allclose(rows, [[0.75, 0, 0.125, 0.125], [0, 0, 1, 0]])
    assert feature_rows(identity, side, 0.0).shape == (2, 2)  # identity only: side left out


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
    assert data.user_ids == ("1", "2") and data.item_ids == ("10", "20")
    assert len(data.users) == 3 and (data.weights == 1).all()
    view = data.train_view(np.ones(3, dtype=bool))
    assert "occupation:technician" in view.user_side_names
    assert {"genre:7", "decade:1970", "decade:1990"} <= set(view.item_side_names)
    assert "age_band:1" in view.user_side_names  # 24 is in the 18-24 band


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
    assert view.user_identity[cold].nnz == 0
    for row in cold:
        names = {view.user_side_names[c] for c in view.user_side[row].indices}
        assert names and all(
            n.split(":")[0] in {"age_group", "income_range", "location"} for n in names
        )
