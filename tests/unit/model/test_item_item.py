"""EASE weights against the regression they solve, and its factors."""

import numpy as np
import scipy.sparse as sp

from finverse_reco.model.item_item import ItemItemFactors, ease_weights


def random_history(seed=0, n_users=40, n_items=12):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32) * 2.5)


def test_ease_solves_each_items_ridge_regression_on_the_others():
    history = random_history()
    x = (history.toarray() > 0).astype(np.float64)  # weights do not matter: binary
    l2 = 3.0
    weights = ease_weights(history, l2)
    for item in range(x.shape[1]):
        others = np.delete(np.arange(x.shape[1]), item)
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, item])
        np.testing.assert_allclose(weights[others, item], expected, rtol=1e-8, atol=1e-10)
        assert weights[item, item] == 0.0


def test_full_rank_factors_reproduce_the_weights():
    history = random_history(1)
    factors = ItemItemFactors.fit(history, 3.0, rank=12)
    np.testing.assert_allclose(
        factors.query @ factors.item.T, ease_weights(history, 3.0), atol=1e-5
    )
    assert factors.query.dtype == np.float32 and factors.item.flags.c_contiguous
    user_part = factors.user_part(history)
    np.testing.assert_allclose(
        user_part @ factors.item.T,
        (history.toarray() > 0) @ ease_weights(history, 3.0),
        atol=1e-4,
    )
