"""The real local RabbitMQ under a random name prefix per test, and a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from subprocess import PIPE

import aio_pika
import orjson
import pytest

from finverse_reco.events import MAX_EVENT_BYTES, EventType, InteractionEvent
from finverse_reco.ingest import IngestConfig, Topology
from finverse_reco.ingest.topology import delete_topology
from finverse_reco.store import InteractionStore, open_store


def make_events(count: int, *, tag: str = "e") -> list[InteractionEvent]:
    """`count` valid events cycling through every event type, ids `<tag>-<n>`."""
    types = list(EventType)
    start = datetime.now(UTC) - timedelta(hours=1)
    events = []
    for n in range(count):
        event_type = types[n % len(types)]
        data: dict[str, object] = {"category": "credit_card", "institution": f"bank-{n % 5}"}
        if event_type is EventType.SEARCH:
            data["query"] = f"cashback {n}"
        elif event_type in (EventType.COMPARISON, EventType.IMPRESSION):
            data["productIDs"] = [f"p-{n % 50}", f"p-{(n + 1) % 50}"]
            if event_type is EventType.IMPRESSION:
                data["channel"] = "app_home"
        else:
            data["productId"] = f"p-{n % 50}"
        if event_type is EventType.PRODUCT_VIEW:
            data["viewDuration"] = float(n % 90)
        events.append(
            InteractionEvent(
                event_id=f"{tag}-{n}",
                user_id=f"u-{n % 97}",
                session_id=f"s-{n % 31}",
                # Every event may name the served list it reacts to; an impression must.
                recommendation_id=f"rec-{n // 10}" if n % 2 or event_type == "impression" else None,
                type=event_type,
                timestamp=start + timedelta(milliseconds=n),
                data=data,
            )
        )
    return events


def malformed_messages() -> list[tuple[str, bytes, str, str]]:
    """(kind, body, routing key, words the dead-letter reason must contain)."""
    good = orjson.loads(make_events(1, tag="m")[0].model_dump_json())
    view = "product_view.web"

    def body(**changes):
        return orjson.dumps({**good, **changes})

    return [
        ("bad JSON", b'{"user_id": "u-1", "type": ', view, "JSON"),
        ("not UTF-8", b'{"user_id": "\xff\xfe"}', view, "UTF-8"),
        ("not an object", b"[1, 2, 3]", view, "JSON object"),
        ("missing user", body(user_id=None), view, "user_id"),
        ("missing product", body(data={"category": "loan"}), view, "productId"),
        ("wrong type", body(timestamp="yesterday-ish"), view, "timestamp"),
        (
            "wrong number",
            body(data={"productId": "p-1", "viewDuration": "long"}),
            view,
            "viewDuration",
        ),
        ("oversize", body(padding="x" * MAX_EVENT_BYTES), view, "more than"),
        ("bad id", body(user_id="robert'); DROP TABLE"), view, "user_id"),
        ("unknown routing key", body(type="teleport"), "teleport.web", "no binding"),
        (
            "impression without its list",
            body(type="impression", data={"productIDs": ["p-1"], "channel": "app_home"}),
            "impression.web",
            "recommendation_id",
        ),
        ("dismiss without product", body(type="dismiss", data={}), "dismiss.web", "productId"),
        ("key and type differ", body(), "favorite.web", "does not match"),
    ]


async def wait_until(condition: Callable[[], object], within: float, what: str) -> None:
    """Poll an (async or plain) condition until true; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


async def rabbitmqctl(*arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *arguments, stdout=PIPE, stderr=PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(arguments)}: {err.decode()}")
    return out.decode()


async def queue_totals(prefix: str) -> dict[str, tuple[int, int]]:
    """(ready, unacknowledged) per queue of this prefix, from the broker itself."""
    listing = await rabbitmqctl(
        "list_queues", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"
    )
    totals = {}
    for line in listing.splitlines():
        name, ready, unacked = line.split("\t")
        if name.startswith(prefix):
            totals[name.removeprefix(prefix)] = (int(ready), int(unacked))
    return totals


async def close_connections(name_part: str) -> int:
    """Make the broker drop every connection whose client name contains `name_part`."""
    listing = await rabbitmqctl(
        "list_connections", "--no-table-headers", "pid", "client_properties"
    )
    closed = 0
    for line in listing.splitlines():
        pid, _, properties = line.partition("\t")
        if name_part in properties:
            await rabbitmqctl("close_connection", pid, "test")
            closed += 1
    return closed


async def drain_queue(url: str, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take (and ack) every message sitting in a queue."""
    connection = await aio_pika.connect(url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(name, ensure=True)
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            taken.append(message)
    return taken


@pytest.fixture
async def ingest_config(rabbitmq_url: str) -> AsyncIterator[IngestConfig]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    config = IngestConfig(
        rabbitmq_url=rabbitmq_url,
        prefetch=200,
        batch_size=50,
        batch_timeout_ms=50,
        max_attempts=3,
        retry_delay_ms=200,
        name_prefix=prefix,
        drain_timeout_s=2.0,
        connection_name=f"finverse-test-{prefix}",
    )
    yield config
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        await delete_topology(await connection.channel(), Topology.of(config))


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[InteractionStore]:
    store = open_store(f"sqlite:///{tmp_path}/interactions.db")
    await store.open()
    yield store
    await store.close()


async def stored_ids(store: InteractionStore) -> list[str]:
    """The event ids in the (SQLite) store's file."""
    with sqlite3.connect(store.path) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM interactions")]
