"""Split protocols: sizes, disjointness, determinism, and that validation never touches test."""

import numpy as np
import pytest

from finverse_reco.evaluation.protocols import split_pairs, validation_split


def pairs(n_users=30, per_user=(4, 13), n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        n = int(rng.integers(*per_user))
        users += [user] * n
        items += list(rng.choice(n_items, size=n, replace=False))
        times += list(rng.permutation(n) * 10.0 + user)
    return np.array(users), np.array(items), np.array(times)


def test_ms_recommenders_keeps_int_three_quarters_of_each_user():
    users, items, times = pairs()
    split = split_pairs("ms-recommenders", users, items, times, seed=42)
    assert not (split.train & split.test).any() and (split.train | split.test).all()
    for user in np.unique(users):
        n = int((users == user).sum())
        assert split.train[users == user].sum() == int(0.75 * n)
    assert split.candidates is None


def test_same_seed_same_split_other_seed_other_split():
    users, items, times = pairs()
    first = split_pairs("holdout", users, items, times, seed=1)
    again = split_pairs("holdout", users, items, times, seed=1)
    other = split_pairs("holdout", users, items, times, seed=2)
    np.testing.assert_array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_time_protocol_holds_out_each_users_latest_pairs():
    users, items, times = pairs()
    split = split_pairs("time", users, items, times, seed=0)
    for user in np.unique(users):
        mine = users == user
        if split.test[mine].any():
            assert times[mine & split.test].min() > times[mine & split.train].max()
        assert split.test[mine].sum() == int(0.2 * mine.sum())


def test_time_protocol_needs_timestamps():
    users, items, times = pairs()
    times[3] = np.nan
    with pytest.raises(ValueError, match="timestamp"):
        split_pairs("time", users, items, times, seed=0)


def test_cold_user_holds_out_whole_users():
    users, items, times = pairs()
    split = split_pairs("cold-user", users, items, times, seed=0)
    test_users = set(users[split.test])
    assert len(test_users) == int(0.2 * 30)
    assert test_users.isdisjoint(users[split.train])


def test_cold_item_holds_out_whole_items_and_ranks_only_them():
    users, items, times = pairs()
    split = split_pairs("cold-item", users, items, times, seed=0)
    assert set(items[split.test]) == set(split.candidates)
    assert set(split.candidates).isdisjoint(items[split.train])
    assert len(split.candidates) == int(0.2 * len(np.unique(items)))


@pytest.mark.parametrize("protocol", ["ms-recommenders", "time", "cold-user", "cold-item"])
def test_validation_is_carved_from_train_only(protocol):
    users, items, times = pairs()
    split = split_pairs(protocol, users, items, times, seed=5)
    validation = validation_split(protocol, split, users, items, times, seed=5)
    assert not (validation.test & split.test).any()
    assert not (validation.train & split.test).any()
    assert validation.test.any()
    np.testing.assert_array_equal(validation.train | validation.test, split.train)


def test_unknown_protocol_is_refused():
    users, items, times = pairs()
    with pytest.raises(ValueError, match="unknown protocol"):
        split_pairs("leave-one-out", users, items, times, seed=0)
