"""`customer_profile` messages through the real broker into a real SQLite store."""

from __future__ import annotations

import orjson
import pytest

from finverse_reco.ingest import InteractionConsumer, InteractionPublisher
from finverse_reco.ingest.consumer import REASON_HEADER

from .conftest import drain_queue, wait_until

pytestmark = pytest.mark.rabbitmq


def body(user_id: str, **fields: object) -> bytes:
    return orjson.dumps({"user_id": user_id, "updated_at": "2026-11-01T00:00:00Z", **fields})


async def test_profiles_are_stored_and_bad_ones_dead_lettered_with_the_reason(ingest_config, store):
    consumer = InteractionConsumer(ingest_config, store)
    await consumer.start()
    try:
        async with InteractionPublisher(ingest_config) as publisher:
            await publisher.publish_body(
                body("u-1", birth_year=1990, risk_profile=2, holdings=["p1"]),
                "customer_profile.core-banking",
            )
            await publisher.publish_body(body("u-2", risk_profile=9), "customer_profile.crm")
            await publisher.publish_body(b"{not json", "customer_profile.crm")
            await publisher.publish_body(body("u-3", income="lots"), "customer_profile.crm")
        await wait_until(lambda: consumer.stats.received == 4, within=20, what="every delivery")
    finally:
        await consumer.stop()

    stored = await store.get_profile("u-1")
    assert stored is not None and stored.risk_profile == 2 and stored.holdings == ("p1",)
    assert await store.get_profiles(["u-2", "u-3"]) == {}
    dead = await drain_queue(
        ingest_config.rabbitmq_url, f"{ingest_config.name_prefix}customer_profiles.dlq"
    )
    reasons = sorted(message.headers[REASON_HEADER] for message in dead)
    assert len(reasons) == 3
    assert any("risk_profile" in reason for reason in reasons)
    assert any("JSON" in reason for reason in reasons)
    assert any("income" in reason and "Extra inputs" in reason for reason in reasons)
