from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from ranked import ranked, user_query  # tests/support

from finverse_reco.index import fold_in, user_query_from_features
from finverse_reco.model import (
    BlendParams,
    HybridModel,
    ModelParams,
    TrainingParams,
    split_interactions,
    train,
)
from finverse_reco.model.ranking_metrics import precision_at_k
from finverse_reco.pipeline.features import demographic_features

CATEGORIES = ("card", "loan", "deposit")
AGES = {"card": "18-24", "loan": "35-44", "deposit": "55+"}


def random_precision(test: sp.csr_matrix, train: sp.csr_matrix, k: int) -> float:
    """Expected precision@k of a uniformly random ranking of each user's unseen items."""
    users = np.flatnonzero(np.diff(test.indptr))
    unseen = test.shape[1] - np.diff(train.indptr)[users]
    relevant = np.diff(test.indptr)[users]
    return float(np.mean(relevant / unseen))  # |top-k ∩ test| / k has mean |test| / |unseen|


def test_fit_learns_the_cluster_structure(training_data, fast_params):
    kept, held_out = split_interactions(training_data.interactions, 0.25, seed=1)
    n_users, n_items = kept.shape
    model = HybridModel(fast_params).fit(kept, sp.identity(n_users), sp.identity(n_items))
    _, users = model.user_representations(sp.identity(n_users))
    biases, items = model.item_representations(sp.identity(n_items))
    learned = precision_at_k(users, items, biases, held_out, kept, k=5)
    baseline = random_precision(held_out.tocsr(), kept.tocsr(), 5)
    assert learned > 3 * baseline, (learned, baseline)


def test_representations_are_contiguous_float32(training_data, fast_params):
    data = training_data
    model = HybridModel(fast_params).fit(data.interactions, data.user_features, data.item_features)
    biases, vectors = model.item_representations(data.item_features)
    assert vectors.shape == (len(data.items), 16) and biases.shape == (len(data.items),)
    for array in (biases, vectors, model.user_embeddings, model.item_biases):
        assert array.dtype == np.float32 and array.flags.c_contiguous
    assert model.user_embeddings.shape == (len(data.user_feature_names), 16)
    # A representation is the feature rows times the feature embeddings.
    np.testing.assert_allclose(
        vectors, data.item_features @ model.item_embeddings, rtol=1e-5, atol=1e-6
    )


def test_same_seed_same_model(training_data, fast_params):
    data = training_data
    fits = [
        HybridModel(fast_params).fit(data.interactions, data.user_features, data.item_features)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fits[0].item_embeddings, fits[1].item_embeddings)
    other = HybridModel(replace(fast_params, random_state=8)).fit(
        data.interactions, data.user_features, data.item_features
    )
    assert not np.array_equal(fits[0].item_embeddings, other.item_embeddings)


def test_early_stopping_keeps_the_best_epoch(training_data):
    data = training_data
    kept, held_out = split_interactions(data.interactions, 0.25, seed=3)
    params = ModelParams(
        no_components=16, epochs=40, learning_rate=0.2, num_threads=1, patience=2, eval_k=5
    )

    def held_out_precision(model: HybridModel) -> float:
        _, users = model.user_representations(data.user_features)
        biases, items = model.item_representations(data.item_features)
        return precision_at_k(users, items, biases, held_out, kept, 5)

    epochs_seen = []
    model = HybridModel(params).fit(
        kept,
        data.user_features,
        data.item_features,
        validation_score=held_out_precision,
        progress=lambda epoch, total: epochs_seen.append((epoch, total)),
    )
    report = model.fit_report
    assert len(report.history) == report.epochs_run == len(epochs_seen)
    assert epochs_seen[0] == (1, 40)
    assert report.history[report.best_epoch - 1] == report.best_score == max(report.history)
    assert report.epochs_run == 40 or report.epochs_run - report.best_epoch == 2
    # The model now holds the best epoch's state, not the last one's.
    assert held_out_precision(model) == report.best_score


def test_fit_refuses_bad_input(training_data, fast_params):
    data = training_data
    model = HybridModel(fast_params)
    with pytest.raises(ValueError, match="no interactions"):
        model.fit(sp.coo_matrix(data.interactions.shape), data.user_features, data.item_features)
    negative = data.interactions.copy()
    negative.data[0] = -1
    with pytest.raises(ValueError, match=">= 0"):
        model.fit(negative, data.user_features, data.item_features)
    with pytest.raises(ValueError, match="user_features"):
        model.fit(data.interactions, data.user_features[:-1], data.item_features)
    with pytest.raises(RuntimeError, match="not fitted"):
        _ = HybridModel().item_embeddings


@pytest.mark.parametrize(
    "kwargs",
    [
        {"no_components": 0},
        {"learning_rate": 0},
        {"user_alpha": -1},
        {"patience": 0},
        {"max_sample_weight": 0},
        {"loss": "hinge"},
        {"sample_weighting": "sqrt"},
    ],
)
def test_bad_params_are_refused(kwargs):
    with pytest.raises(ValueError):
        ModelParams(**kwargs)


def test_seed_defaults():
    params = ModelParams()
    assert (params.no_components, params.learning_rate, params.loss, params.epochs) == (
        50,
        0.05,
        "warp",
        20,
    )
    assert params.user_alpha == params.item_alpha == 1e-5


def test_split_keeps_every_user_and_partitions_the_entries(training_data):
    matrix = training_data.interactions
    kept, held_out = split_interactions(matrix, 0.9, seed=0)
    assert np.all(np.diff(kept.tocsr().indptr) >= 1)
    assert kept.nnz + held_out.nnz == matrix.nnz
    np.testing.assert_allclose((kept + held_out).toarray(), matrix.toarray())
    assert kept.multiply(held_out).nnz == 0


def test_train_records_validation_metrics_and_builds_the_index(trained_index, training_data):
    index = trained_index
    metrics = index.metrics
    assert 0.0 < metrics["validation_precision@10"] <= 1.0
    assert metrics["validation_interactions"] > 0
    assert index.users == training_data.users
    assert index.item_matrix.shape == (len(training_data.items), 17)
    assert index.params["model"]["no_components"] == 16
    assert index.training["counts"]["users"] == 150
    assert set(index.category_names) == set(CATEGORIES)
    seen = index.seen_rows(0)
    assert set(seen) == set(training_data.interactions.tocsr()[0].indices)


def test_trained_users_get_their_own_category(trained_index):
    index = trained_index
    for user_row in range(0, 30, 4):
        own = {index.item_meta(r)[0] for r in index.seen_rows(user_row)}
        rows, _ = ranked(index, user_query(index, user_row), 5, exclude=index.seen_rows(user_row))
        assert {index.item_meta(r)[0] for r in rows} == own


def test_fold_in_from_items_of_a_cluster_recommends_that_cluster(trained_index):
    index = trained_index
    for category in CATEGORIES:
        touched = np.flatnonzero(index.category_mask(category))[:3]
        vector = fold_in(index, dict.fromkeys(touched.tolist(), 1.0))
        rows, _ = ranked(index, vector, 8, exclude=touched)
        assert {index.item_meta(r)[0] for r in rows} == {category}


def test_a_new_user_described_by_demographics_gets_their_segment(trained_index):
    index = trained_index
    for category, age in AGES.items():
        vector = user_query_from_features(index, demographic_features({"age_group": age}))
        rows, _ = ranked(index, vector, 5)
        assert {index.item_meta(r)[0] for r in rows} == {category}
        popular, _ = index.popular(5, segment={"age_group": age}).of(0)
        assert {index.item_meta(r)[0] for r in popular} == {category}


def test_the_validation_fit_never_changes_what_is_served(training_data, fast_params, trained_index):
    plain = train(training_data, TrainingParams(fast_params))
    assert dict(plain.metrics) == {}
    np.testing.assert_array_equal(plain.user_vectors, trained_index.user_vectors)
    np.testing.assert_array_equal(plain.item_matrix, trained_index.item_matrix)
    with pytest.raises(ValueError):
        train(training_data, TrainingParams(fast_params), validation_fraction=1.0)


def test_train_refuses_features_mixed_otherwise_than_the_params_say(training_data, fast_params):
    params = TrainingParams(
        fast_params, features=replace(training_data.feature_config, user_identity_weight=0.9)
    )
    with pytest.raises(ValueError, match="user_identity_weight"):
        train(training_data, params)


def test_the_item_item_blend_is_one_dot_product_and_leaves_lightfm_alone(
    training_data, fast_params
):
    blend = BlendParams(item_item_weight=1.0, l2=10.0, rank=8)
    lightfm = train(training_data, TrainingParams(fast_params))
    blended = train(training_data, TrainingParams(fast_params, blend=blend))
    d = lightfm.dim
    assert blended.dim == d + 8 and blended.metrics["item_item"] == "blended"
    np.testing.assert_array_equal(blended.user_vectors[:, :d], lightfm.user_vectors)
    np.testing.assert_array_equal(blended.item_matrix[:, :d], lightfm.item_matrix[:, :d])
    np.testing.assert_array_equal(blended.item_matrix[:, -1], lightfm.item_matrix[:, -1])
    # Every score gains the low-rank EASE score of the user's history, times the scale.
    from finverse_reco.model.item_item import ItemItemFactors

    factors = ItemItemFactors.fit(training_data.interactions, 10.0, 8)
    history = factors.user_part(training_data.interactions)
    scale = blended.metrics["item_item_scale"]
    for user in (0, 3, 77):
        np.testing.assert_allclose(
            user_query(blended, user) @ blended.item_matrix.T,
            user_query(lightfm, user) @ lightfm.item_matrix.T
            + scale * history[user] @ factors.item.T,
            rtol=1e-4,
            atol=1e-4,
        )
    # Someone known by features alone ranks by LightFM alone; similar products stay LightFM's.
    features = demographic_features({"age_group": "18-24"})
    np.testing.assert_allclose(
        user_query_from_features(blended, features) @ blended.item_matrix.T,
        user_query_from_features(lightfm, features) @ lightfm.item_matrix.T,
        rtol=1e-5,
        atol=1e-6,
    )
    assert_same_similar_items(blended, lightfm)
    skipped = train(training_data, TrainingParams(fast_params, blend=replace(blend, max_items=10)))
    assert skipped.dim == d and skipped.metrics["item_item"].startswith("skipped")


def test_the_segment_prior_adds_segment_popularity_for_customers_known_by_demographics(
    training_data, fast_params
):
    lightfm = train(training_data, TrainingParams(fast_params))
    blended = train(
        training_data, TrainingParams(fast_params, blend=BlendParams(segment_weight=1.0))
    )
    scale, segments = blended.metrics["segment_scale"], blended.metrics["segments"]
    assert blended.dim == lightfm.dim + segments and scale > 0
    for age in AGES.values():
        features = demographic_features({"age_group": age})
        shares = blended.segment_popularity[blended.segment_keys.index(f"age_group={age}")]
        np.testing.assert_allclose(
            user_query_from_features(blended, features) @ blended.item_matrix.T,
            user_query_from_features(lightfm, features) @ lightfm.item_matrix.T
            + scale * shares / shares.sum(),
            rtol=1e-4,
            atol=1e-5,
        )
    # Trained users and similar products are untouched.
    np.testing.assert_allclose(
        blended.user_vectors @ blended.item_matrix[:, :-1].T,
        lightfm.user_vectors @ lightfm.item_matrix[:, :-1].T,
        rtol=1e-5,
        atol=1e-5,
    )
    assert_same_similar_items(blended, lightfm)


def assert_same_similar_items(blended, lightfm):
    rows = np.arange(0, 60, 7)
    ours, theirs = blended.similar_items(rows, 10), lightfm.similar_items(rows, 10)
    np.testing.assert_array_equal(ours.rows, theirs.rows)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)
