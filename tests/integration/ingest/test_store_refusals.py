"""The consumer against events a real store refuses for good, and against a real store outage.

The refusals are the database's own: on SQLite a trigger the test installs (RAISE(ABORT)); on the
MongoDB stand-in a unique index on (user_id, timestamp) plus a stored event the refused one collides
with. The outages are real too: an exclusive lock another connection holds on the SQLite file, and
the stand-in process stopped and started again on the same data file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mongo_stand_in import MongoStandIn, started_stand_in
from pymongo import MongoClient

from finverse_reco.events import InteractionEvent
from finverse_reco.ingest import InteractionConsumer, InteractionPublisher, queue_for
from finverse_reco.ingest.consumer import ATTEMPTS_HEADER, REASON_HEADER
from finverse_reco.store import InteractionStore
from finverse_reco.store.migrate import migrate
from finverse_reco.store.mongo import MongoInteractionStore
from finverse_reco.store.sqlite import SQLiteInteractionStore

from .conftest import drain_queue, make_events, queue_totals, wait_until

pytestmark = pytest.mark.rabbitmq
EVENTS = 50  # one batch: the test config closes a batch at 50 deliveries


class SQLiteBackend:
    reason_words = "refused by the trigger the test installed"

    def __init__(self, path: Path) -> None:
        self.path = path
        # A short busy timeout: a locked file shows up as StoreUnavailable within 0.1 s.
        self.store: InteractionStore = SQLiteInteractionStore(path, busy_timeout_ms=100)

    async def refuse(self, event: InteractionEvent) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON interactions"
                f" WHEN NEW.event_id = '{event.event_id}'"
                f" BEGIN SELECT RAISE(ABORT, '{self.reason_words}'); END"
            )

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()

    def stored_ids(self) -> list[str]:
        with sqlite3.connect(self.path) as db:
            return [event_id for (event_id,) in db.execute("SELECT event_id FROM interactions")]


class MongoBackend:
    reason_words = "user_id"  # MongoDB names the index; the stand-in names it after its keys

    def __init__(self, server: MongoStandIn) -> None:
        self.server = server
        self.url = f"{server.url}/finverse_ingest"
        # Checked every half second (the driver's default is 10 s): the restart is noticed at once.
        self.store: InteractionStore = MongoInteractionStore.from_url(
            f"{self.url}?heartbeatFrequencyMS=500", server_selection_timeout_ms=500, timeout_ms=1000
        )

    async def refuse(self, event: InteractionEvent) -> None:
        with MongoClient(self.url, tz_aware=True) as client:
            interactions = client.get_default_database().interactions
            interactions.create_index([("user_id", 1), ("timestamp", 1)], unique=True)
            blocker = {**event.to_document(), "event_id": "already-there"}
            interactions.insert_one(blocker)

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        await asyncio.to_thread(self.server.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(self.server.start)

    def stored_ids(self) -> list[str]:
        with MongoClient(self.url) as client:
            interactions = client.get_default_database().interactions
            ids = [doc["event_id"] for doc in interactions.find({}, {"event_id": 1})]
        return [event_id for event_id in ids if event_id != "already-there"]


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
async def backend(request, tmp_path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        chosen: Any = SQLiteBackend(tmp_path / "interactions.db")
        url = f"sqlite:///{chosen.path}"
    else:
        server = started_stand_in(tmp_path / "mongo", database=str(tmp_path / "mongo.db"))
        chosen = MongoBackend(server)
        url = chosen.url
    assert (await migrate(url)).ok
    await chosen.store.open()
    yield chosen
    await chosen.store.close()
    if request.param == "mongo":
        server.stop()


@pytest.fixture
def one_batch(ingest_config):
    """Batches close at EVENTS deliveries, not on a timer: the events arrive as one batch."""
    return replace(ingest_config, batch_size=EVENTS, batch_timeout_ms=10_000)


async def dead_letters(config, events: list[InteractionEvent]) -> list[Any]:
    dead = []
    for event_type in {event.type for event in events}:
        name = f"{config.name_prefix}{queue_for(event_type)}.dlq"
        dead += await drain_queue(config.rabbitmq_url, name)
    return dead


async def assert_stored_once_and_queues_empty(config, backend, expected: list[str]) -> None:
    stored = backend.stored_ids()
    assert sorted(stored) == sorted(expected)  # each exactly once
    totals = await queue_totals(config.name_prefix)
    assert all(counts == (0, 0) for counts in totals.values()), totals


async def test_a_refused_event_is_dead_lettered_with_the_reason_and_the_rest_stored(
    one_batch, backend
) -> None:
    events = make_events(EVENTS, tag="r")
    refused = events[7]
    await backend.refuse(refused)
    consumer = InteractionConsumer(one_batch, backend.store)
    await consumer.start()
    try:
        async with InteractionPublisher(one_batch) as publisher:
            await publisher.publish(events)
        await wait_until(
            lambda: consumer.stats.stored == EVENTS - 1 and consumer.stats.dead_lettered == 1,
            within=20,
            what="49 stored and 1 dead-lettered",
        )
    finally:
        await consumer.stop()

    assert consumer.stats.batches == 1
    assert (consumer.stats.refused, consumer.stats.retried) == (1, 0)  # at once, never retried
    (dead,) = await dead_letters(one_batch, events)
    assert dead.message_id == refused.event_id
    assert "the store refused the event" in dead.headers[REASON_HEADER]
    assert backend.reason_words in dead.headers[REASON_HEADER]
    assert dead.headers[ATTEMPTS_HEADER] == 0
    expected = [e.event_id for e in events if e is not refused]
    await assert_stored_once_and_queues_empty(one_batch, backend, expected)


async def test_a_transient_failure_retries_the_batch_and_stores_it_exactly_once(
    one_batch, backend
) -> None:
    events = make_events(EVENTS, tag="t")
    consumer = InteractionConsumer(one_batch, backend.store)
    await consumer.start()
    try:
        async with backend.outage():
            async with InteractionPublisher(one_batch) as publisher:
                await publisher.publish(events)
            await wait_until(
                lambda: consumer.stats.store_failures >= 2, within=20, what="failed attempts"
            )
            totals = await queue_totals(one_batch.name_prefix)
            assert sum(sum(counts) for counts in totals.values()) == EVENTS  # nothing acked
            assert consumer.stats.stored == 0
        await wait_until(
            lambda: consumer.stats.stored == EVENTS, within=30, what="the batch after the outage"
        )
    finally:
        await consumer.stop()

    assert consumer.stats.batches == 1
    assert (consumer.stats.duplicates, consumer.stats.dead_lettered, consumer.stats.retried) == (
        0,
        0,
        0,
    )
    await assert_stored_once_and_queues_empty(one_batch, backend, [e.event_id for e in events])
