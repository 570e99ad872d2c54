"""Micro-batching: the ranking requests that arrive together are ranked together.

A request queues its query vector and waits on a future. The batch runs once the event loop has
taken in every request that was ready (`call_soon`), so batching adds no waiting of its own: a lone
request is ranked in the next loop iteration. `EmbeddingIndex.rank` then does one matrix product and
one top-k pass (`index/topk.py`) for the whole batch. On a small catalog that turns some twenty numpy
calls per request into twenty per batch (their fixed cost was most of a request's ranking time); on a
large one it reads the item matrix once per batch instead of once per request.

Large catalogs rank in one thread of their own (BLAS releases the GIL, so the event loop keeps
serving), one batch at a time; the requests that arrive meanwhile form the next batch. This is the
one place that decides where ranking runs: the rankings that are not batched (similar products,
popularity) go through `run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from finverse_reco.index import EmbeddingIndex

Ranked = tuple[np.ndarray, np.ndarray]


@dataclass(slots=True)
class _Request:
    index: EmbeddingIndex
    query: np.ndarray | None  # None: the trained user at `user_row`
    user_row: int
    k: int
    exclude: np.ndarray | None
    allowed: np.ndarray | None
    answer: asyncio.Future[Ranked]


class RankingBatcher:
    def __init__(
        self, thread: ThreadPoolExecutor, *, off_loop_items: int, max_batch: int = 64
    ) -> None:
        if off_loop_items < 1 or max_batch < 1:
            raise ValueError("off_loop_items and max_batch must be >= 1")
        self._thread = thread
        self._off_loop_items = off_loop_items
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._flush_scheduled = False
        self._in_thread = False  # a batch is ranking in the thread; new requests wait for it

    async def recommend(
        self,
        index: EmbeddingIndex,
        query: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> Ranked:
        """The best `k` items for a (d + 1,) query vector (`EmbeddingIndex.rank`), in a batch."""
        if query.shape != (index.dim + 1,):  # refused here, so it cannot fail a whole batch
            raise ValueError(f"query must have shape ({index.dim + 1},)")
        return await self._enqueue(_Request(index, query, -1, k, exclude, allowed, _future()))

    async def recommend_for_user(
        self,
        index: EmbeddingIndex,
        user_row: int,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> Ranked:
        """`recommend` for the trained user at `user_row`: the batch gathers all its trained
        users' vectors at once."""
        if not 0 <= user_row < index.n_users:
            raise IndexError(f"user row {user_row} is not in the index")
        return await self._enqueue(_Request(index, None, user_row, k, exclude, allowed, _future()))

    async def run(self, index: EmbeddingIndex, ranking: Callable[[], Ranked]) -> Ranked:
        """A ranking that is not batched, here or in the ranking thread when the catalog is large."""
        if index.n_items < self._off_loop_items:
            return ranking()
        return await asyncio.get_running_loop().run_in_executor(self._thread, ranking)

    def _enqueue(self, request: _Request) -> asyncio.Future[Ranked]:
        self._pending.append(request)
        if not (self._flush_scheduled or self._in_thread):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return request.answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        # One index per batch: a model swap between two requests splits them.
        index = self._pending[0].index
        batch: list[_Request] = []
        waiting: list[_Request] = []
        for request in self._pending:
            fits = request.index is index and len(batch) < self._max_batch
            (batch if fits else waiting).append(request)
        self._pending = waiting
        if index.n_items < self._off_loop_items:
            try:
                outcome: list[Ranked] | BaseException = _rank_batch(batch)
            except Exception as exc:  # fails the batch's requests, never the batcher
                outcome = exc
            _settle(batch, outcome)
            self._schedule_next()
            return
        self._in_thread = True
        ranking = asyncio.get_running_loop().run_in_executor(self._thread, _rank_batch, batch)
        ranking.add_done_callback(partial(self._thread_finished, batch))

    def _thread_finished(self, batch: list[_Request], ranking: asyncio.Future) -> None:
        self._in_thread = False
        if ranking.cancelled():
            _settle(batch, RuntimeError("ranking was cancelled: the service is shutting down"))
        else:
            _settle(batch, ranking.exception() or ranking.result())
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


def _settle(batch: list[_Request], outcome: list[Ranked] | BaseException) -> None:
    """Answer every waiting request with its ranking, or all of them with the error."""
    if isinstance(outcome, BaseException):
        for request in batch:
            if not request.answer.done():
                request.answer.set_exception(outcome)
        return
    for request, ranked in zip(batch, outcome, strict=True):
        if not request.answer.done():  # a request whose client went away was cancelled
            request.answer.set_result(ranked)


def _future() -> asyncio.Future[Ranked]:
    return asyncio.get_running_loop().create_future()


def _rank_batch(batch: list[_Request]) -> list[Ranked]:
    index = batch[0].index
    queries = [request.query for request in batch]
    if all(query is None for query in queries):  # the usual batch: trained users only
        block = index.user_queries([request.user_row for request in batch])
    else:
        block = np.empty((len(batch), index.dim + 1), dtype=np.float32)
        trained = [line for line, query in enumerate(queries) if query is None]
        if trained:
            block[trained] = index.user_queries([batch[line].user_row for line in trained])
        for line, query in enumerate(queries):
            if query is not None:
                block[line] = query
    ranked = index.rank(
        block,
        max(request.k for request in batch),
        exclude=[request.exclude for request in batch],
        allowed=[request.allowed for request in batch],
    )
    return [ranked.of(line, request.k) for line, request in enumerate(batch)]
