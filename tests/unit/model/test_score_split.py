"""The exact split of served scores into per-feature contributions (index/explain.py), on a real
LightFM fit: the parts sum to the scores the index ranks with, and the feature rows the index keeps
reproduce LightFM's representations (so nothing is left to `other` without a blend)."""

from __future__ import annotations

import numpy as np
import pytest
from ranked import user_query  # tests/support

from finverse_reco.index import fold_in, user_query_from_features
from finverse_reco.index.explain import (
    PartKind,
    contributions,
    cosine_split,
    feature_parts,
    trained_user_parts,
)
from finverse_reco.index.foldin import fold_in_parts, item_row_from_features
from finverse_reco.model import BlendParams, TrainingParams, train
from finverse_reco.pipeline.features import demographic_features
from finverse_reco.products import Product

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def blended(training_data, fast_params):
    blend = BlendParams(item_item_weight=1.0, segment_weight=0.5, l2=10.0, rank=8)
    return train(training_data, TrainingParams(fast_params, blend=blend))


def _other(parts, values):
    return values[:, parts.of_kind(PartKind.OTHER)].sum(axis=1)


def test_a_trained_users_score_is_the_sum_of_its_feature_contributions(trained_index):
    index = trained_index
    for user in (0, 1, 42, index.n_users - 1):
        parts = trained_user_parts(index, user)
        values = contributions(parts, index.item_matrix)
        np.testing.assert_allclose(
            values.sum(axis=1), user_query(index, user) @ index.item_matrix.T, **TOLERANCE
        )
        features, weights = index.user_feature_row(user)
        assert len(features) >= 2  # the identity and the age group at least
        names = {index.user_feature_names.id(row) for row in features}
        assert f"user:{index.users.id(user)}" in names
        assert any(name.startswith("age_group:") for name in names)
        np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
        # Without a blend the features explain the whole vector: `other` is float noise.
        assert np.abs(_other(parts, values)).max() < 1e-4 * np.abs(values.sum(axis=1)).max()
        np.testing.assert_array_equal(
            values[:, parts.of_kind(PartKind.ITEM_BIAS)[0]], index.item_matrix[:, -1]
        )


def test_with_blends_the_split_still_adds_up_and_other_holds_the_history(blended):
    index = blended
    for user in (0, 5, 99):
        parts = trained_user_parts(index, user)
        values = contributions(parts, index.item_matrix)
        np.testing.assert_allclose(
            values.sum(axis=1), user_query(index, user) @ index.item_matrix.T, **TOLERANCE
        )
        assert np.abs(_other(parts, values)).max() > 1e-3  # the EASE history columns


def test_a_customer_known_by_demographics_splits_over_those_features(blended):
    index = blended
    features = demographic_features({"age_group": "18-24", "location": "nowhere-known"})
    parts = feature_parts(index, features)
    assert [index.user_feature_names.id(int(r)) for r in parts.rows[:-1]] == ["age_group:18-24"]
    assert parts.kinds == (PartKind.USER_FEATURE, PartKind.ITEM_BIAS)
    values = contributions(parts, index.item_matrix)
    np.testing.assert_allclose(
        values.sum(axis=1),
        user_query_from_features(index, features) @ index.item_matrix.T,
        **TOLERANCE,
    )
    assert feature_parts(index, {"location:nowhere": 1.0}) is None


def test_a_fold_in_splits_over_the_touched_items_and_features(trained_index, world):
    index = trained_index
    weights = {index.items.row("p000"): 2.0, index.items.row("p003"): 1.0}
    features = demographic_features({"age_group": "18-24"})
    parts = fold_in_parts(index, weights, features, features_share=0.3)
    assert parts.kinds == (
        PartKind.ITEM,
        PartKind.ITEM,
        PartKind.USER_FEATURE,
        PartKind.ITEM_BIAS,
    )
    np.testing.assert_array_equal(
        parts.query, fold_in(index, weights, features, features_share=0.3)
    )
    # The query is what fold-in promises: 70% the weighted mean of unit item vectors at the
    # typical user length, 30% the features' direction at that length, and the bias column.
    d = index.dim
    rows = list(weights)
    unit = (
        index.item_matrix[rows, :d] / np.linalg.norm(index.item_matrix[rows, :d], axis=1)[:, None]
    )
    from_items = np.array(list(weights.values())) @ unit
    from_items *= index.typical_user_norm / np.linalg.norm(from_items)
    mixed = user_query_from_features(index, features)[:d]
    mixed *= index.typical_user_norm / np.linalg.norm(mixed)
    np.testing.assert_allclose(parts.query[:d], 0.7 * from_items + 0.3 * mixed, **TOLERANCE)
    assert parts.query[d] == 1.0
    values = contributions(parts, index.item_matrix)
    np.testing.assert_allclose(values.sum(axis=1), parts.query @ index.item_matrix.T, **TOLERANCE)


def test_a_product_the_model_never_saw_folds_in_by_its_features(trained_index):
    index = trained_index
    new = Product("p999", "New Card", "card", "bank1", interest_rate=4.0, risk_level=2)
    vector = item_row_from_features(index, new)
    parts = fold_in_parts(index, {}, unseen_items=(vector[None, :], np.array([1.0], np.float32)))
    assert parts.kinds == (PartKind.UNSEEN_ITEM, PartKind.ITEM_BIAS)
    assert parts.rows[0] == 0
    # Its neighbours are the cards: the query points where card features point.
    scores = parts.query @ index.item_matrix.T
    best = np.argsort(-scores)[:10]
    categories = [index.item_meta(int(row))[0] for row in best]
    assert categories.count("card") >= 8, categories
    assert fold_in_parts(index, {}, unseen_items=(np.zeros((1, index.dim + 1)), np.ones(1))) is None


def test_a_cosine_splits_over_the_neighbours_features(trained_index, blended):
    for index in (trained_index, blended):
        anchor = index.items.row("p000")
        rows, cosines = index.similar_items(np.array([anchor]), 10).of(0)
        split = cosine_split(index, index.item_matrix[anchor], rows)
        totals = np.array([split.of(i)[1].sum() + split.rest[i] for i in range(len(rows))])
        np.testing.assert_allclose(totals, cosines, **TOLERANCE)
        for position, row in enumerate(rows.tolist()):
            features, _ = split.of(position)
            np.testing.assert_array_equal(features, index.item_feature_row(row)[0])
        if index is trained_index:  # the features explain LightFM's whole item vector
            assert np.abs(split.rest).max() < 1e-4


def test_the_popularity_split_adds_up_per_segment(trained_index):
    popularity = trained_index.popular_items
    rows = np.arange(0, trained_index.n_items, 3)
    for segment in (None, {"age_group": "18-24"}, {"age_group": "18-24", "location": "x"}):
        keys, values = popularity.split(segment, rows)
        np.testing.assert_allclose(values.sum(axis=1), popularity.scores(segment)[rows], rtol=1e-5)
        assert values.shape[1] == len(keys) + 1
    assert popularity.split({"age_group": "18-24"}, rows)[0] == ["age_group=18-24"]
