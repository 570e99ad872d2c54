from dataclasses import fields

import numpy as np
import pytest
from ranked import ranked, user_query  # tests/support

from finverse_reco.index import fold_in, item_row_from_features, user_query_from_features
from finverse_reco.pipeline.features import demographic_features
from finverse_reco.products import Product

CATEGORIES = ("card", "loan", "deposit")


def similar(index, vector, k, **filters):
    return index.similar(vector[None, :], k, **filters).of(0)


def similar_items(index, row, k, **filters):
    return index.similar_items(np.array([row]), k, **filters).of(0)


def brute_force(scores: np.ndarray, k: int, candidates: np.ndarray | None = None):
    rows = np.arange(len(scores)) if candidates is None else candidates
    order = rows[np.argsort(-scores[rows], kind="stable")]
    return order[:k]


def cosine_to(index, vector):
    vectors = index.item_matrix[:, : index.dim].astype(np.float64)
    return vectors @ vector / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(vector))


@pytest.mark.parametrize("k", [1, 5, 10, 299, 300, 1000])
def test_recommend_equals_brute_force_argsort(index, k):
    for user_row in range(0, index.n_users, 7):
        vector = user_query(index, user_row)
        rows, scores = ranked(index, vector, k)
        expected_scores = index.item_matrix.astype(np.float64) @ vector
        np.testing.assert_array_equal(rows, brute_force(expected_scores, k))
        np.testing.assert_allclose(scores, expected_scores[rows], rtol=1e-5, atol=1e-4)
        assert scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 0)


def test_user_queries_have_the_bias_column(index):
    queries = index.user_queries([4, 0, 4])
    assert queries.shape == (3, index.dim + 1) and queries.dtype == np.float32
    assert (queries[:, -1] == 1.0).all()
    np.testing.assert_array_equal(queries[:, :-1], index.user_vectors[[4, 0, 4]])


def test_exclude_and_allowed_masks_are_honoured(index):
    vector = user_query(index, 0)
    everything, _ = ranked(index, vector, index.n_items)
    exclude = everything[:5]
    rows, _ = ranked(index, vector, 10, exclude=exclude)
    assert not set(rows) & set(exclude)
    np.testing.assert_array_equal(rows, everything[5:15])

    allowed = np.zeros(index.n_items, dtype=bool)
    allowed[1::3] = True  # a custom mask (not one of the index's own)
    rows, _ = ranked(index, vector, 10, exclude=exclude, allowed=allowed)
    assert allowed[rows].all() and not set(rows) & set(exclude)
    expected = [r for r in everything if allowed[r] and r not in set(exclude)][:10]
    np.testing.assert_array_equal(rows, expected)


def test_category_filter_uses_the_index_masks(index):
    mask = index.category_mask("LOAN")
    assert mask is index.category_mask("loan")
    assert index.category_mask("crypto") is None
    assert mask.sum() == index.n_items // 3
    rows, _ = ranked(index, user_query(index, 0), 500, allowed=mask)
    assert len(rows) == mask.sum()
    assert all(index.item_meta(r)[0] == "loan" for r in rows)
    rows_seen_excluded, _ = ranked(
        index, user_query(index, 1), 5, allowed=mask, exclude=index.seen_rows(1)
    )
    assert not set(rows_seen_excluded) & set(index.seen_rows(1))


def test_fewer_allowed_items_than_k_returns_only_those(index):
    allowed = np.zeros(index.n_items, dtype=bool)
    allowed[[3, 4]] = True
    rows, scores = ranked(index, user_query(index, 0), 10, allowed=allowed, exclude=np.array([3]))
    np.testing.assert_array_equal(rows, [4])
    assert len(scores) == 1


def test_bad_arguments_are_refused(index):
    with pytest.raises(ValueError):
        ranked(index, np.ones(index.dim, dtype=np.float32), 5)
    with pytest.raises(ValueError):
        ranked(index, user_query(index, 0), 5, allowed=np.ones(3, dtype=bool))
    with pytest.raises(ValueError):
        index.similar(np.ones((1, index.dim + 2), dtype=np.float32), 5)


def test_similar_items_is_cosine_and_never_the_item_itself(index):
    for item_row in (0, 1, 2, 150, 299):
        rows, scores = similar_items(index, item_row, 10)
        assert item_row not in rows
        cosine = cosine_to(index, index.item_matrix[item_row, : index.dim])
        cosine[item_row] = -np.inf
        np.testing.assert_array_equal(rows, brute_force(cosine, 10))
        np.testing.assert_allclose(scores, cosine[rows], rtol=1e-4)
        # The clusters are well separated: neighbours share the category.
        assert {index.item_meta(r)[0] for r in rows} == {index.item_meta(item_row)[0]}


def test_similar_items_within_a_category(index):
    rows, _ = similar_items(index, 0, 10, allowed=index.category_mask("deposit"))
    assert all(index.item_meta(r)[0] == "deposit" for r in rows)


def test_fold_in_from_items_of_a_cluster_recommends_that_cluster(index):
    for category in CATEGORIES:
        touched = np.flatnonzero(index.category_mask(category))[:3]
        vector = fold_in(index, dict.fromkeys(touched.tolist(), 1.0))
        rows, _ = ranked(index, vector, 10, exclude=touched)
        assert {index.item_meta(r)[0] for r in rows} == {category}


def test_fold_in_weights_items_and_mixes_features(index):
    card, deposit = (np.flatnonzero(index.category_mask(c))[0] for c in ("card", "deposit"))
    leaning_card = fold_in(index, {int(card): 5.0, int(deposit): 0.1})
    rows, _ = ranked(index, leaning_card, 5)
    assert index.item_meta(rows[0])[0] == "card"
    assert fold_in(index, {}) is None
    assert fold_in(index, {10_000: 1.0}) is None  # unknown rows are ignored
    features_only = fold_in(index, {}, {"age_group:55+": 1.0})
    np.testing.assert_allclose(
        features_only, user_query_from_features(index, {"age_group:55+": 1.0})
    )
    # A share of direction: all features points where the features point.
    mixed = fold_in(index, {int(card): 1.0}, {"age_group:55+": 1.0}, features_share=1.0)
    unit = features_only[:-1] / np.linalg.norm(features_only[:-1])
    np.testing.assert_allclose(mixed[:-1] / np.linalg.norm(mixed[:-1]), unit, rtol=1e-5)
    half = fold_in(index, {int(card): 1.0}, {"age_group:55+": 1.0}, features_share=0.5)
    rows, _ = ranked(index, half, 20)
    assert {index.item_meta(r)[0] for r in rows} <= {"card", "deposit"}


def test_user_vector_from_features_is_the_normalised_feature_mix(index):
    assert user_query_from_features(index, {"unknown:x": 1.0}) is None
    features = demographic_features({"age_group": "25-34", "location": "York"})
    assert features == {"age_group:25-34": 1.0, "location:York": 1.0}
    vector = user_query_from_features(index, {**features, "income_range:never-seen": 1.0})
    expected = index.user_feature_embeddings[[0, 2]].mean(axis=0)
    np.testing.assert_allclose(vector[:-1], expected, rtol=1e-6)
    assert vector[-1] == 1.0
    rows, _ = ranked(index, user_query_from_features(index, {"age_group:25-34": 1.0}), 10)
    assert {index.item_meta(r)[0] for r in rows} == {"card"}


def test_item_vector_from_features_places_a_new_product_by_its_features(index):
    product = Product("new", "New Loan", "loan", "Alpha", risk_level=2)
    row = item_row_from_features(index, product)
    names = ["category:loan", "institution:Alpha", "risk_level:2"]
    positions = [index.item_feature_names.row(n) for n in names]
    np.testing.assert_allclose(
        row[:-1], index.item_feature_embeddings[positions].mean(axis=0), rtol=1e-5
    )
    assert row[-1] == pytest.approx(index.item_feature_biases[positions].mean())
    rows, _ = similar(index, row, 5, allowed=index.category_mask("loan"))
    assert len(rows) == 5
    unknown = item_row_from_features(index, Product("x", "X", "crypto", "Nowhere"))
    assert not unknown.any()
    rows, scores = similar(index, unknown, 5)
    assert len(rows) == 0 and len(scores) == 0


def test_popular_orders_by_popularity_and_segment(index):
    rows, scores = index.popular(10).of(0)
    np.testing.assert_array_equal(rows, brute_force(index.popularity, 10))
    assert np.all(np.diff(scores) <= 0)
    rows, _ = index.popular(10, segment={"age_group": "55+"}).of(0)
    assert {index.item_meta(r)[0] for r in rows} == {"deposit"}
    unknown_segment, _ = index.popular(10, segment={"age_group": "nobody"}).of(0)
    np.testing.assert_array_equal(unknown_segment, brute_force(index.popularity, 10))
    filtered, _ = index.popular(5, allowed=index.category_mask("card"), exclude=rows).of(0)
    assert all(index.item_meta(r)[0] == "card" for r in filtered)


def test_popular_fills_with_untouched_items_only_when_needed(index):
    allowed = np.zeros(index.n_items, dtype=bool)
    allowed[[0, 1, 7, 14]] = True  # rows 0, 7, 14 have popularity 0
    rows, scores = index.popular(3, allowed=allowed).of(0)
    np.testing.assert_array_equal(rows, [1, 0, 7])
    np.testing.assert_array_equal(scores[1:], [0.0, 0.0])


def test_seen_rows_and_lookups(index):
    assert index.users.row("u003") == 3 and index.users.row("nobody") is None
    assert index.items.row("i010") == 10 and index.items.row("nothing") is None
    assert index.items.ids_of(np.array([2, 0])) == ["i002", "i000"]
    assert len(index.seen_rows(3)) == 4
    assert index.item_meta(0) == ("card", "Alpha")
    assert index.item_meta(1) == ("loan", "")


def test_the_index_is_immutable(index):
    for array in (index.item_matrix, index.user_vectors, index.popularity, index.seen_indices):
        with pytest.raises(ValueError):
            array[0] = 0
    with pytest.raises(AttributeError):
        index.version = "x"
    with pytest.raises(TypeError):
        index.metrics["validation_precision@10"] = 1.0
    assert index.item_matrix.flags.c_contiguous and index.item_matrix.dtype == np.float32


def test_inconsistent_arrays_are_refused(index):
    good = index
    with pytest.raises(ValueError, match="item_matrix"):
        type(good)(**{**_fields(good), "item_matrix": good.item_matrix[:, :-1]})
    with pytest.raises(ValueError, match="seen"):
        type(good)(**{**_fields(good), "seen_indices": good.seen_indices + 1000})
    with pytest.raises(ValueError, match="unique"):
        type(good)(**{**_fields(good), "users": ["same"] * good.n_users})


def test_with_version_returns_a_new_index(index):
    named = index.with_version("20260101T000000Z-abcdef")
    assert named.version == "20260101T000000Z-abcdef" and index.version == ""
    np.testing.assert_array_equal(named.item_matrix, index.item_matrix)


def _fields(index):
    return {f.name: getattr(index, f.name) for f in fields(index) if f.init}
