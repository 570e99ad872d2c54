"""Kill the consumer process twice and drop the broker connections once: nothing lost or doubled.

CI size by default; the acceptance size by hand:
    FINVERSE_INGEST_CRASH_EVENTS=100000 FINVERSE_INGEST_CRASH_RATE=4000 \
    FINVERSE_INGEST_CLOSE_ALL=1 .venv/bin/pytest tests/integration/ingest/test_crash_recovery.py
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from finverse_reco.ingest import InteractionPublisher
from finverse_reco.store import open_store

from .conftest import (
    close_connections,
    drain_queue,
    make_events,
    malformed_messages,
    queue_totals,
    rabbitmqctl,
    stored_ids,
    wait_until,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

TOTAL = int(os.environ.get("FINVERSE_INGEST_CRASH_EVENTS", "3000"))
RATE = float(os.environ.get("FINVERSE_INGEST_CRASH_RATE", "300"))  # events published per second
CLOSE_ALL = os.environ.get("FINVERSE_INGEST_CLOSE_ALL") == "1"
MALFORMED_EVERY = 100
RUNNER = Path(__file__).with_name("consumer_process.py")


class ConsumerProcess:
    def __init__(self, config, store_url: str, log_path: Path) -> None:
        fields = {name: getattr(config, name) for name in config.__dataclass_fields__}
        self.arguments = [sys.executable, str(RUNNER), store_url, json.dumps(fields)]
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.arguments, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    async def signal(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout=30)

    async def stored_at_least(self, store, count: float) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            pytest.fail(f"the consumer exited with {self.process.returncode}:\n{self.log()}")
        return await store.count() >= count

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def publish_paced(config, events, bad) -> None:
    window = max(1, int(RATE / 10))
    async with InteractionPublisher(config, in_flight=window) as publisher:
        started = time.monotonic()
        for n in range(0, len(events), window):
            await publisher.publish(events[n : n + window])
            for _, payload, key, message_id in bad.get(n // window, ()):
                await publisher.publish_body(payload, key, message_id=message_id)
            ahead = (n + window) / RATE - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def test_nothing_is_lost_or_doubled_across_kills_and_dropped_connections(
    ingest_config, tmp_path
):
    events = make_events(TOTAL, tag="crash")
    cases = malformed_messages()
    window = max(1, int(RATE / 10))
    bad: dict[int, list[tuple[str, bytes, str, str]]] = {}
    for n in range(0, TOTAL, MALFORMED_EVERY):
        kind, payload, key, _ = cases[(n // MALFORMED_EVERY) % len(cases)]
        bad.setdefault(n // window, []).append((kind, payload, key, f"bad/{kind}/{n}"))
    bad_ids = {message_id for group in bad.values() for *_, message_id in group}

    store_url = f"sqlite:///{tmp_path}/crash.db"
    watcher = open_store(store_url)
    await watcher.open()
    consumer = ConsumerProcess(ingest_config, store_url, tmp_path / "consumer.log")
    await consumer.start()
    publishing = asyncio.create_task(publish_paced(ingest_config, events, bad))
    try:
        for share in (0.15, 0.35):
            await wait_until(
                lambda share=share: consumer.stored_at_least(watcher, share * TOTAL),
                within=60 + TOTAL / 500,
                what=f"{share:.0%} of the events stored",
            )
            assert await consumer.signal(signal.SIGKILL) == -signal.SIGKILL
            await consumer.start()
        await wait_until(
            lambda: consumer.stored_at_least(watcher, 0.55 * TOTAL),
            within=60 + TOTAL / 500,
            what="55%",
        )
        if CLOSE_ALL:
            await rabbitmqctl("close_all_connections", "test")
        else:
            closed = await close_connections(ingest_config.connection_name)
            # The consumer's connection, and the publisher's while it is still publishing (on a
            # loaded machine the restarts can take until the paced publishing is over).
            assert closed == 2 or (closed == 1 and publishing.done())
        await publishing
        await wait_until(
            lambda: consumer.stored_at_least(watcher, TOTAL),
            within=60 + TOTAL / 500,
            what="every event",
        )
        await wait_until(
            lambda: _queues_settled(ingest_config.name_prefix),
            within=30,
            what="every queue empty and no delivery unacknowledged",
        )
        assert await consumer.signal(signal.SIGTERM) == 0, consumer.log()
    except BaseException:
        publishing.cancel()
        if consumer.process and consumer.process.returncode is None:
            consumer.process.kill()
        print(consumer.log())
        raise
    finally:
        await watcher.close()

    watcher = open_store(store_url)
    await watcher.open()
    try:
        ids = await stored_ids(watcher)
        assert len(ids) == TOTAL == await watcher.count()
        assert set(ids) == {event.event_id for event in events}
    finally:
        await watcher.close()
    dead = []
    for base in ("product_views", "interactions", "unrouted"):
        dead += await drain_queue(
            ingest_config.rabbitmq_url, f"{ingest_config.name_prefix}{base}.dlq"
        )
    # A malformed message may be dead-lettered twice if its consumer died before acking it.
    assert {message.message_id for message in dead} == bad_ids
    assert "stopped:" in consumer.log()


async def _queues_settled(prefix: str) -> bool:
    totals = await queue_totals(prefix)
    return all(counts == (0, 0) for name, counts in totals.items() if not name.endswith(".dlq"))


async def test_sigterm_stores_and_acknowledges_the_batch_in_flight_then_exits(
    ingest_config, tmp_path
):
    slow_batches = replace(ingest_config, batch_size=10_000, batch_timeout_ms=60_000)
    store_url = f"sqlite:///{tmp_path}/drain.db"
    consumer = ConsumerProcess(slow_batches, store_url, tmp_path / "consumer.log")
    await consumer.start()
    async with InteractionPublisher(slow_batches) as publisher:
        await publisher.publish(make_events(150, tag="drain"))

    async def held_unacknowledged() -> bool:
        totals = await queue_totals(slow_batches.name_prefix)
        return sum(unacked for _, unacked in totals.values()) == 150

    await wait_until(held_unacknowledged, within=20, what="150 deliveries in the open batch")
    started = time.monotonic()
    assert await consumer.signal(signal.SIGTERM) == 0, consumer.log()
    assert time.monotonic() - started < 10  # drained now, not at the 60 s batch timeout
    store = open_store(store_url)
    await store.open()
    try:
        assert await store.count() == 150
    finally:
        await store.close()
    assert await _queues_settled(slow_batches.name_prefix)
