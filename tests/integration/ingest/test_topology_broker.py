"""The topology on the real broker: idempotent declaration, routing, TTL, quorum, mismatches."""

from __future__ import annotations

from dataclasses import replace

import aio_pika
import pytest

from finverse_reco.events import EventType
from finverse_reco.ingest import (
    IngestConfig,
    InteractionPublisher,
    Topology,
    TopologyMismatch,
    declare_topology_at,
    queue_for,
)
from finverse_reco.ingest.topology import delete_topology

from .conftest import drain_queue, make_events, queue_totals, rabbitmqctl, wait_until

pytestmark = pytest.mark.rabbitmq


async def test_declaring_twice_is_harmless_and_keys_route_by_event_type(ingest_config):
    await declare_topology_at(ingest_config)
    await declare_topology_at(ingest_config)
    events = make_events(len(EventType))
    async with InteractionPublisher(ingest_config) as publisher:
        await publisher.publish(events, source="ios")
        await publisher.publish_body(b'{"type": "teleport"}', "teleport.web")

    totals = await queue_totals(ingest_config.name_prefix)
    expected = {name: 0 for name in ("product_views", "searches", "interactions", "comparisons")}
    for event in events:
        expected[queue_for(event.type)] += 1
    expected["unrouted"] = 1
    assert {name: totals[name][0] for name in expected} == expected
    assert expected["interactions"] == len(EventType) - 3  # every type without its own queue
    taken = await drain_queue(ingest_config.rabbitmq_url, ingest_config.name_prefix + "searches")
    assert [m.routing_key for m in taken] == ["search.ios"]
    assert taken[0].message_id == next(e.event_id for e in events if e.type is EventType.SEARCH)


async def test_expired_messages_are_dead_lettered_not_dropped(ingest_config):
    short_lived = replace(
        ingest_config, message_ttl_ms=100, name_prefix="x" + ingest_config.name_prefix
    )
    try:
        async with InteractionPublisher(short_lived) as publisher:
            await publisher.publish(make_events(1), source="web")  # a product_view
        dead_letters = short_lived.name_prefix + "product_views.dlq"

        async def expired() -> bool:
            totals = await queue_totals(short_lived.name_prefix)
            return totals.get("product_views.dlq", (0, 0))[0] == 1

        await wait_until(expired, within=10, what="the expired message in the dead-letter queue")
        (message,) = await drain_queue(short_lived.rabbitmq_url, dead_letters)
        assert message.headers["x-death"][0]["reason"] == "expired"
    finally:
        await _delete(short_lived)


async def test_quorum_queues_by_setting_and_a_clear_error_on_mismatch(ingest_config):
    quorum = replace(ingest_config, queue_type="quorum")
    await declare_topology_at(quorum)
    types = {
        name: kind
        for name, kind in _queue_types(
            await rabbitmqctl("list_queues", "--no-table-headers", "name", "type")
        )
        if name.startswith(ingest_config.name_prefix)
    }
    assert set(types.values()) == {"quorum"}
    assert len(types) == len(Topology.of(quorum).all_queues())

    with pytest.raises(TopologyMismatch, match="FINVERSE_RABBITMQ_QUEUE_TYPE") as error:
        await declare_topology_at(ingest_config)  # same names, classic
    assert ingest_config.name_prefix in str(error.value)


def _queue_types(listing: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind in (line.split("\t") for line in listing.splitlines())]


async def _delete(config: IngestConfig) -> None:
    connection = await aio_pika.connect(config.rabbitmq_url)
    async with connection:
        await delete_topology(await connection.channel(), Topology.of(config))
