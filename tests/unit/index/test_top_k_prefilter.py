"""Large catalogs take the sampled-threshold top-k path; it must rank exactly like a full sort."""

import numpy as np
import pytest

from finverse_reco.index import EmbeddingIndex

N_ITEMS = 60_000  # above the prefilter's minimum
DIM = 4


def _large_index(seed: int, *, tied: bool = False) -> EmbeddingIndex:
    rng = np.random.default_rng(seed)
    item_matrix = rng.normal(size=(N_ITEMS, DIM + 1)).astype(np.float32)
    if tied:
        item_matrix = np.round(item_matrix)  # many exactly equal scores
    n_users = 3
    return EmbeddingIndex(
        user_ids=[f"u{i}" for i in range(n_users)],
        item_ids=[f"i{i}" for i in range(N_ITEMS)],
        user_vectors=rng.normal(size=(n_users, DIM)),
        item_matrix=item_matrix,
        user_feature_names=[],
        user_feature_embeddings=np.zeros((0, DIM)),
        user_feature_biases=np.zeros(0),
        item_feature_names=[],
        item_feature_embeddings=np.zeros((0, DIM)),
        item_feature_biases=np.zeros(0),
        item_categories=np.arange(N_ITEMS) % 2,
        category_names=["even", "odd"],
        item_institutions=np.zeros(N_ITEMS),
        institution_names=["bank"],
        popularity=rng.random(N_ITEMS),
        segment_keys=[],
        segment_popularity=np.zeros((0, N_ITEMS)),
        seen_indptr=np.array([0, 0, 0, 0]),
        seen_indices=np.zeros(0),
    )


def _brute_force(scores: np.ndarray, k: int, exclude=(), allowed=None) -> np.ndarray:
    scores = scores.astype(np.float64).copy()
    scores[list(exclude)] = -np.inf
    if allowed is not None:
        scores[~allowed] = -np.inf
    return np.sort(scores)[::-1][:k]


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_recommend_matches_a_full_sort(tied, k):
    index = _large_index(seed=k, tied=tied)
    vector = index.user_vector(0)
    expected = index.item_matrix.astype(np.float64) @ vector
    exclude = np.argsort(-expected)[:5]  # the five best are excluded: the list must shift up
    rows, scores = index.recommend(vector, k, exclude=exclude)
    assert len(rows) == k == len(set(rows.tolist()))
    assert not set(rows.tolist()) & set(exclude.tolist())
    np.testing.assert_allclose(scores, _brute_force(expected, k, exclude), rtol=1e-5)
    np.testing.assert_allclose(scores, expected[rows], rtol=1e-5)


def test_category_filter_and_similar_items_on_a_large_catalog():
    index = _large_index(seed=3)
    allowed = index.category_mask("odd")
    rows, scores = index.recommend(index.user_vector(1), 20, allowed=allowed)
    assert (rows % 2 == 1).all()
    expected = index.item_matrix.astype(np.float64) @ index.user_vector(1)
    np.testing.assert_allclose(scores, _brute_force(expected, 20, allowed=allowed), rtol=1e-5)

    vectors = index.item_matrix[:, :DIM].astype(np.float64)
    cosine = vectors @ vectors[7] / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(vectors[7]))
    rows, scores = index.similar_items(7, 10)
    assert 7 not in rows.tolist()
    np.testing.assert_allclose(scores, _brute_force(cosine, 10, exclude=[7]), rtol=1e-4)
