"""Embedded mode with FINVERSE_RABBITMQ_URL: `serve` consumes from the real broker in-process."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import aio_pika
import pytest
from fastapi.testclient import TestClient

from finverse_reco import compose
from finverse_reco.api.app import create_app
from finverse_reco.events import parse_event
from finverse_reco.ingest import InteractionPublisher, Topology
from finverse_reco.ingest.topology import delete_topology

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def broker_settings(trained, rabbitmq_url):
    settings = trained.model_copy(
        update={
            "rabbitmq_url": rabbitmq_url,
            "rabbitmq_name_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "ingest_batch_timeout_ms": 50,
        }
    )
    yield settings

    async def cleanup() -> None:
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await delete_topology(channel, Topology.of(compose.ingest_config(settings)))

    asyncio.run(cleanup())


def wait_for(predicate, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def test_serve_consumes_published_events_into_its_store(broker_settings):
    session = f"sess_amqp_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    events = [
        parse_event(
            {
                "user_id": "amqp_user",
                "session_id": session,
                "type": "product_view",
                "timestamp": now,
                "data": {"productId": pid, "viewDuration": 25},
            }
        )
        for pid in ("prod_0020", "prod_0021", "prod_0022")
    ]
    with TestClient(create_app(broker_settings), raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/ready").json()["checks"].get("broker") == "ok")

        async def publish() -> int:
            async with InteractionPublisher(compose.ingest_config(broker_settings)) as publisher:
                return await publisher.publish(events, source="web")

        assert asyncio.run(publish()) == 3
        body = wait_for(
            lambda: (
                (b := client.get(f"/api/v1/recommendations/session/{session}").json())["strategy"]
                == "session"
                and b
            )
        )
        assert not {"prod_0020", "prod_0021", "prod_0022"} & {
            r["id"] for r in body["recommendations"]
        }
