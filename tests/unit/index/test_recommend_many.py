"""`recommend_many` ranks a batch exactly as `recommend` ranks each vector alone."""

import numpy as np
import pytest
from clustered_index import clustered_index  # tests/support

from .test_top_k_prefilter import _large_index


def _vectors(index, rows):
    return np.stack([index.user_vector(row) for row in rows])


def _one_by_one(index, vectors, ks, excludes, alloweds):
    return [
        index.recommend(vector, k, exclude=exclude, allowed=allowed)
        for vector, k, exclude, allowed in zip(vectors, ks, excludes, alloweds, strict=True)
    ]


def _assert_same(batch, alone):
    assert len(batch) == len(alone)
    for (rows, scores), (expected_rows, expected_scores) in zip(batch, alone, strict=True):
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)  # BLAS: GEMM vs GEMV


def _requests(index, n, seed):
    """A mixed batch: different k, with and without exclusions and category filters."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, index.n_users, n)
    ks = rng.choice([1, 5, 10, 37], n).tolist()
    excludes = [index.seen_rows(row) if i % 2 else None for i, row in enumerate(rows)]
    mask = index.category_mask(index.category_names[0])
    alloweds = [mask if i % 3 == 0 else None for i in range(n)]
    return _vectors(index, rows), ks, excludes, alloweds


@pytest.mark.parametrize("seed", [0, 1])
def test_a_mixed_batch_equals_one_request_at_a_time(seed):
    index = clustered_index(seed)
    request = _requests(index, 12, seed)
    _assert_same(index.recommend_many(*request), _one_by_one(index, *request))


def test_a_batch_on_a_large_catalog_takes_the_prefilter_and_stays_exact():
    index = _large_index(seed=5)
    vectors = np.stack([index.user_vector(row) for row in (0, 1, 2, 0)])
    full = vectors.astype(np.float64) @ index.item_matrix.T.astype(np.float64)
    excludes = [np.argsort(-full[0])[:5], None, None, np.arange(100)]
    ks = [10, 100, 1, 20]

    batch = index.recommend_many(vectors, ks, excludes, [None] * 4)

    _assert_same(batch, _one_by_one(index, vectors, ks, excludes, [None] * 4))
    for (rows, scores), k, exclude, expected in zip(batch, ks, excludes, full, strict=True):
        if exclude is not None:
            expected = expected.copy()
            expected[exclude] = -np.inf
        np.testing.assert_allclose(scores, np.sort(expected)[::-1][:k], rtol=1e-5)
        assert len(set(rows.tolist())) == k


def test_exclusions_that_leave_fewer_than_k_items_shorten_only_that_list():
    index = clustered_index()
    everything_but_two = np.arange(index.n_items - 2)
    vectors = _vectors(index, [0, 1])

    (short, _), (full, _) = index.recommend_many(
        vectors, [10, 10], [everything_but_two, None], [None, None]
    )

    assert sorted(short.tolist()) == [index.n_items - 2, index.n_items - 1]
    assert len(full) == 10


def test_k_beyond_the_catalog_and_k_zero():
    index = clustered_index()
    vectors = _vectors(index, [0, 1])

    (everything, scores), (nothing, _) = index.recommend_many(
        vectors, [index.n_items + 5, 0], [None, None], [None, None]
    )

    assert sorted(everything.tolist()) == list(range(index.n_items))
    assert (np.diff(scores) <= 0).all()
    assert len(nothing) == 0


def test_mismatched_arguments_are_refused():
    index = clustered_index()
    with pytest.raises(ValueError, match="one k"):
        index.recommend_many(_vectors(index, [0, 1]), [5], [None, None], [None, None])
    with pytest.raises(ValueError, match="shape"):
        index.recommend_many(np.zeros((2, 3), np.float32), [5, 5], [None, None], [None, None])


def test_user_vectors_for_gathers_what_user_vector_gives_one_by_one():
    index = clustered_index()
    rows = [5, 0, 5, index.n_users - 1]

    gathered = index.user_vectors_for(rows)

    assert gathered.dtype == np.float32 and gathered.flags.c_contiguous
    np.testing.assert_array_equal(gathered, _vectors(index, rows))
