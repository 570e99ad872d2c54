"""The consumer against the real broker and a real SQLite store."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace

import pytest

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.events import EventType
from finverse_reco.ingest import InteractionConsumer, InteractionPublisher, queue_for
from finverse_reco.ingest.admission import EventAdmission
from finverse_reco.ingest.consumer import ATTEMPTS_HEADER, QUEUE_HEADER, REASON_HEADER
from finverse_reco.ingest.topology import CONSUMED_QUEUES
from finverse_reco.products import Product
from finverse_reco.store import StoreUnavailable

from .conftest import (
    drain_queue,
    make_events,
    malformed_messages,
    queue_totals,
    stored_ids,
    wait_until,
)

pytestmark = pytest.mark.rabbitmq
OUTAGE_SECONDS = float(os.environ.get("FINVERSE_INGEST_OUTAGE_SECONDS", "2"))


class FaultyStore:
    """A real store behind a switch: `down` makes it unreachable; events of `refused_users` make it
    fail with an error that is neither StoreUnavailable nor EventsRefused (a store that cannot say
    why). Real refusals by real stores: test_store_refusals.py."""

    def __init__(self, store, refused_users: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.down = False
        self.refused_users = refused_users
        self.insert_calls_while_down = 0

    async def insert_many(self, events):
        if self.down:
            self.insert_calls_while_down += 1
            raise StoreUnavailable("switched off by the test")
        if any(event.user_id in self.refused_users for event in events):
            raise ValueError("document too exotic for this store")
        return await self.store.insert_many(events)

    async def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("switched off by the test")
        await self.store.ping()

    def __getattr__(self, name):
        return getattr(self.store, name)


async def test_valid_events_are_stored_once_enriched_and_acknowledged(ingest_config, store):
    events = make_events(400)
    consumer = InteractionConsumer(ingest_config, store)
    await consumer.start()
    try:
        assert consumer.connected
        async with InteractionPublisher(ingest_config) as publisher:
            await publisher.publish(events, source="web")
            await publisher.publish(events[:40], source="android")  # a producer's resend
        await wait_until(lambda: consumer.stats.received == 440, within=20, what="every delivery")
    finally:
        await consumer.stop()
    assert not consumer.connected

    ids = await stored_ids(store)
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert consumer.stats.stored == 400 and consumer.stats.duplicates == 40
    for stored in await store.user_interactions("u-1", limit=50):
        assert stored.queue_source == queue_for(stored.type)
        assert stored.processed_by == "recommendation-service"
        assert stored.received_at is not None and stored.received_at >= stored.timestamp
    totals = await queue_totals(ingest_config.name_prefix)
    assert all(counts == (0, 0) for counts in totals.values()), totals


async def test_malformed_messages_go_to_dead_letter_queues_with_their_reason(ingest_config, store):
    cases = malformed_messages()
    valid = make_events(300)
    rounds = range(0, len(valid), 20)
    consumer = InteractionConsumer(ingest_config, store)
    await consumer.start()
    try:
        async with InteractionPublisher(ingest_config) as publisher:
            for n in rounds:
                await publisher.publish(valid[n : n + 20])
                for kind, payload, key, _ in cases:
                    await publisher.publish_body(payload, key, message_id=f"bad/{kind}/{n}")
        expected_dead = len(cases) * len(rounds)
        await wait_until(
            lambda: (
                consumer.stats.dead_lettered == expected_dead
                and consumer.stats.stored == len(valid)
            ),
            within=30,
            what="every message stored or dead-lettered",
        )
        assert consumer.connected
    finally:
        await consumer.stop()

    assert sorted(await stored_ids(store)) == sorted(e.event_id for e in valid)
    dead = []
    for base in ("product_views", "interactions", "unrouted"):
        dead += await drain_queue(
            ingest_config.rabbitmq_url, f"{ingest_config.name_prefix}{base}.dlq"
        )
    assert len(dead) == expected_dead
    by_kind = Counter()
    for message in dead:
        kind = message.message_id.split("/")[1]
        _, payload, key, words = next(case for case in cases if case[0] == kind)
        reason = message.headers[REASON_HEADER]
        assert words in reason, (kind, reason)
        assert message.body == payload
        expected_queue = (
            "unrouted" if key.startswith("teleport") else queue_for(EventType(key.split(".")[0]))
        )
        assert message.headers[QUEUE_HEADER] == expected_queue
        by_kind[kind] += 1
    assert by_kind == {case[0]: len(rounds) for case in cases}


async def test_a_store_outage_holds_every_ack_and_consumption_resumes_by_itself(
    ingest_config, store
):
    faulty = FaultyStore(store)
    consumer = InteractionConsumer(ingest_config, faulty)
    await consumer.start()
    try:
        async with InteractionPublisher(ingest_config) as publisher:
            await publisher.publish(make_events(100, tag="before"))
            await wait_until(lambda: consumer.stats.stored == 100, within=20, what="first events")
            faulty.down = True
            await publisher.publish(make_events(300, tag="during"))
        outage_started = time.monotonic()
        await wait_until(
            lambda: faulty.insert_calls_while_down >= 3, within=10, what="retries while down"
        )
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            totals = await queue_totals(ingest_config.name_prefix)
            waiting = sum(sum(counts) for counts in totals.values())
            assert waiting == 300, totals  # nothing acked, nothing dead-lettered or retried
        assert totals["product_views"][1] + totals["interactions"][1] > 0  # held, unacked
        assert consumer.stats.stored == 100 and consumer.connected
        faulty.down = False
        await wait_until(lambda: consumer.stats.stored == 400, within=20, what="recovery")
    finally:
        await consumer.stop()
    assert await store.count() == 400
    assert consumer.stats.dead_lettered == consumer.stats.retried == 0
    totals = await queue_totals(ingest_config.name_prefix)
    assert all(counts == (0, 0) for counts in totals.values()), totals


async def test_events_the_store_fails_on_unexplained_are_retried_then_dead_lettered(
    ingest_config, store
):
    events = make_events(120)
    poisoned_user = events[7].user_id  # product_click events of one user
    poisoned = {e.event_id for e in events if e.user_id == poisoned_user}
    consumer = InteractionConsumer(ingest_config, FaultyStore(store, frozenset({poisoned_user})))
    await consumer.start()
    try:
        async with InteractionPublisher(ingest_config) as publisher:
            await publisher.publish(events)
        await wait_until(
            lambda: consumer.stats.dead_lettered == len(poisoned),
            within=20,
            what="the refused events in their dead-letter queues",
        )
    finally:
        await consumer.stop()
    assert set(await stored_ids(store)) == {e.event_id for e in events} - poisoned
    attempts = ingest_config.max_attempts
    assert consumer.stats.retried == len(poisoned) * (attempts - 1)
    dead = []
    for event_type in {e.type for e in events if e.event_id in poisoned}:
        name = f"{ingest_config.name_prefix}{queue_for(event_type)}.dlq"
        dead += await drain_queue(ingest_config.rabbitmq_url, name)
    assert {m.message_id for m in dead} == poisoned
    for message in dead:
        assert message.headers[ATTEMPTS_HEADER] == attempts
        assert "too exotic" in message.headers[REASON_HEADER]
        assert f"after {attempts} attempts" in message.headers[REASON_HEADER]


async def test_stop_stores_and_acknowledges_the_batch_in_flight(ingest_config, store):
    slow_batches = replace(ingest_config, batch_size=10_000, batch_timeout_ms=30_000)
    consumer = InteractionConsumer(slow_batches, store)
    await consumer.start()
    async with InteractionPublisher(slow_batches) as publisher:
        await publisher.publish(make_events(150))

    async def all_delivered() -> bool:
        totals = await queue_totals(slow_batches.name_prefix)
        return sum(unacked for _, unacked in totals.values()) == 150

    await wait_until(all_delivered, within=10, what="150 deliveries held in the open batch")
    assert await store.count() == 0
    started = time.monotonic()
    await consumer.stop()
    assert time.monotonic() - started < 5  # drained at once, not at the 30 s batch timeout
    assert await store.count() == 150
    totals = await queue_totals(slow_batches.name_prefix)
    assert all(counts == (0, 0) for counts in totals.values()), totals


async def test_events_for_unknown_products_are_dead_lettered_naming_the_product(
    ingest_config, store
):
    """The consumer applies the HTTP endpoint's product rule: the catalog decides."""
    known = LocalCatalog([Product(f"p-{n}", f"P {n}", "card", "bank") for n in range(40)])
    events = make_events(200)  # products p-0 … p-49: p-40 … p-49 are not in the catalog
    unknown = [e for e in events if any(int(p[2:]) >= 40 for p in e.product_ids())]
    assert unknown
    consumer = InteractionConsumer(ingest_config, store, EventAdmission(products=known))
    await consumer.start()
    try:
        async with InteractionPublisher(ingest_config) as publisher:
            await publisher.publish(events)
        await wait_until(
            lambda: consumer.stats.received == len(events), within=20, what="every delivery"
        )
    finally:
        await consumer.stop()

    assert sorted(await stored_ids(store)) == sorted(e.event_id for e in events if e not in unknown)
    dead = []
    for base in CONSUMED_QUEUES:
        dead += await drain_queue(
            ingest_config.rabbitmq_url, f"{ingest_config.name_prefix}{base}.dlq"
        )
    assert sorted(m.message_id for m in dead) == sorted(e.event_id for e in unknown)
    for message in dead:
        assert "unknown product(s): p-4" in message.headers[REASON_HEADER]
