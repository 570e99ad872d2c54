"""RankingBatcher: concurrent requests are ranked together, each gets exactly its own answer."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from clustered_index import clustered_index  # tests/support
from ranked import ranked, user_query  # tests/support

from finverse_reco.index import fold_in
from finverse_reco.service import batching
from finverse_reco.service.batching import RankingBatcher


@pytest.fixture
def thread():
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown()


@pytest.fixture
def batch_sizes(monkeypatch):
    sizes: list[int] = []
    rank = batching._rank_batch

    def counting(batch):
        sizes.append(len(batch))
        return rank(batch)

    monkeypatch.setattr(batching, "_rank_batch", counting)
    return sizes


def _expected(index, row, k, exclude):
    return ranked(index, user_query(index, row), k, exclude=exclude)


@pytest.mark.parametrize("off_loop_items", [10**9, 1], ids=["on the loop", "in the thread"])
async def test_concurrent_requests_share_one_batch_and_get_their_own_answers(
    thread, batch_sizes, off_loop_items
):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=off_loop_items)
    rows = list(range(12))

    answers = await asyncio.gather(
        *(
            batcher.recommend(index, user_query(index, row), 3 + row, exclude=index.seen_rows(row))
            for row in rows
        )
    )

    assert batch_sizes == [len(rows)]
    for row, (ranked_rows, scores) in zip(rows, answers, strict=True):
        expected_rows, expected_scores = _expected(index, row, 3 + row, index.seen_rows(row))
        np.testing.assert_array_equal(ranked_rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)  # BLAS: GEMM vs GEMV


@pytest.mark.parametrize("off_loop_items", [10**9, 1], ids=["on the loop", "in the thread"])
async def test_trained_users_by_row_and_given_vectors_share_a_batch(
    thread, batch_sizes, off_loop_items
):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=off_loop_items)
    folded = fold_in(index, {0: 1.0, 3: 2.0})

    by_row, by_vector, also_by_row = await asyncio.gather(
        batcher.recommend_for_user(index, 4, 6, exclude=index.seen_rows(4)),
        batcher.recommend(index, folded, 5),
        batcher.recommend_for_user(index, 7, 3),
    )

    assert batch_sizes == [3]
    for (rows, scores), (expected_rows, expected_scores) in [
        (by_row, _expected(index, 4, 6, index.seen_rows(4))),
        (by_vector, ranked(index, folded, 5)),
        (also_by_row, _expected(index, 7, 3, None)),
    ]:
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)  # BLAS: GEMM vs GEMV


async def test_a_user_row_outside_the_index_fails_alone(thread, batch_sizes):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=10**9)

    outside, fine = await asyncio.gather(
        batcher.recommend_for_user(index, index.n_users, 5),
        batcher.recommend_for_user(index, 0, 5),
        return_exceptions=True,
    )

    assert isinstance(outside, IndexError)
    np.testing.assert_array_equal(fine[0], _expected(index, 0, 5, None)[0])
    assert batch_sizes == [1]


async def test_requests_arriving_while_the_thread_ranks_form_the_next_batch(thread, batch_sizes):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=1)

    first = asyncio.ensure_future(batcher.recommend(index, user_query(index, 0), 5))
    await asyncio.sleep(0)  # the first batch (of one) is now in the thread
    later = [batcher.recommend(index, user_query(index, row), 5) for row in (1, 2, 3)]
    await asyncio.gather(first, *later)

    assert batch_sizes == [1, 3]


async def test_a_batch_holds_one_index_a_swap_in_between_splits_it(thread, batch_sizes):
    old, new = clustered_index(seed=1), clustered_index(seed=2)
    batcher = RankingBatcher(thread, off_loop_items=10**9)

    answers = await asyncio.gather(
        batcher.recommend(old, user_query(old, 0), 5),
        batcher.recommend(new, user_query(new, 0), 5),
        batcher.recommend(old, user_query(old, 1), 5),
    )

    assert sorted(batch_sizes) == [1, 2]
    np.testing.assert_array_equal(answers[1][0], _expected(new, 0, 5, None)[0])
    np.testing.assert_array_equal(answers[2][0], _expected(old, 1, 5, None)[0])


async def test_a_malformed_request_fails_alone_before_it_joins_a_batch(thread, batch_sizes):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=10**9)
    wrong_shape = np.zeros(3, dtype=np.float32)

    malformed, fine = await asyncio.gather(
        batcher.recommend(index, wrong_shape, 5),
        batcher.recommend(index, user_query(index, 0), 5),
        return_exceptions=True,
    )

    assert isinstance(malformed, ValueError)
    np.testing.assert_array_equal(fine[0], _expected(index, 0, 5, None)[0])
    assert batch_sizes == [1]


async def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs(
    thread, monkeypatch
):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=10**9)
    rank = batching._rank_batch

    def fail_once(batch):
        monkeypatch.setattr(batching, "_rank_batch", rank)
        raise MemoryError("no room for the score matrix")

    monkeypatch.setattr(batching, "_rank_batch", fail_once)
    outcomes = await asyncio.gather(
        *(batcher.recommend(index, user_query(index, row), 5) for row in (0, 1)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, MemoryError) for outcome in outcomes)

    rows, _ = await batcher.recommend(index, user_query(index, 0), 5)
    np.testing.assert_array_equal(rows, _expected(index, 0, 5, None)[0])


async def test_a_cancelled_request_leaves_the_others_answered(thread):
    index = clustered_index()
    batcher = RankingBatcher(thread, off_loop_items=1)

    gone = asyncio.ensure_future(batcher.recommend(index, user_query(index, 0), 5))
    kept = asyncio.ensure_future(batcher.recommend(index, user_query(index, 1), 5))
    await asyncio.sleep(0)
    gone.cancel()

    rows, _ = await kept
    np.testing.assert_array_equal(rows, _expected(index, 1, 5, None)[0])
    assert gone.cancelled()
