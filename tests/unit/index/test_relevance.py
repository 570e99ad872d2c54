"""relevanceScore's mappings (index/relevance.py): in [0, 1], never rising down a list, and the
dot-product one equal to what a pass over the whole catalog would give."""

import numpy as np
from ranked import ranked, user_query  # tests/support
from scipy.stats import norm

from finverse_reco.index.relevance import (
    ScoreMoments,
    cosine_relevance,
    dot_relevance,
    share_relevance,
)


def _non_increasing(values) -> bool:
    return bool(np.all(np.diff(values) <= 0))


def test_dot_relevance_is_the_normal_cdf_of_the_scores_standard_score_in_the_catalog(index):
    for user in range(0, index.n_users, 7):
        query = user_query(index, user)
        every = (index.item_matrix.astype(np.float64) @ query).astype(np.float64)
        _, scores = ranked(index, query, 20)
        expected = norm.cdf((scores - every.mean()) / every.std())
        got = dot_relevance(query, scores, index.score_moments)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert _non_increasing(got) and min(got) >= 0 and max(got) <= 1
        # A middling item is middling, a bottom one near 0.
        median_row = np.argsort(every)[len(every) // 2]
        assert 0.3 < dot_relevance(query, every[[median_row]], index.score_moments)[0] < 0.7


def test_a_query_the_catalog_cannot_tell_apart_gets_one_half():
    moments = ScoreMoments.of(np.ones((5, 3), dtype=np.float32))
    assert dot_relevance(np.array([1.0, 2.0, 1.0]), np.array([4.0, 4.0]), moments) == [
        0.5,
        0.5,
    ]
    assert ScoreMoments.of(np.zeros((0, 3))).covariance.shape == (3, 3)


def test_cosine_and_share_relevance_stay_in_range_and_keep_the_order():
    cosines = np.array([1.0, 0.5, 0.0, -0.2, -1.0])
    assert cosine_relevance(cosines) == [1.0, 0.75, 0.5, 0.4, 0.0]
    shares = share_relevance(np.array([40.0, 10.0, 0.0]), 80.0)
    assert shares == [0.5, 0.125, 0.0]
    assert share_relevance(np.array([0.0, 0.0]), 0.0) == [0.0, 0.0]
