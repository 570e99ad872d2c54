"""Erasure on both stores: after the DELETE the store holds nothing of the customer, both replicas
stop personalising within the poll interval, the next model does not know them, and their late
events (HTTP or RabbitMQ) are dropped and counted."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from fastapi.testclient import TestClient
from mongo_stand_in import empty_store_url

from finverse_reco import compose
from finverse_reco.api.app import create_app
from finverse_reco.cli import seed_demo, train_once
from finverse_reco.events import parse_event
from finverse_reco.ingest import IngestConfig, InteractionConsumer, InteractionPublisher
from finverse_reco.ingest.topology import Topology, delete_topology
from finverse_reco.model.artifacts import current_version, load_version
from finverse_reco.settings import Settings
from finverse_reco.store import open_store
from finverse_reco.store.migrate import migrate

ADMIN_KEY = "erasure-admin-key"
WRITER_KEY = "erasure-writer-key"
POLL_SECONDS = 0.5
CUSTOMER = "user_00007"
RECS = "/api/v1/recommendations/products"


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def world(request, tmp_path) -> Settings:
    """A trained demo world on each store: replicas built from these settings share the store
    and the model directory."""
    settings = Settings(
        _env_file=None,
        store_url=empty_store_url(request, tmp_path, "finverse_erasure"),
        model_dir=tmp_path / "models",
        catalog_path=tmp_path / "catalog.json",
        api_key=ADMIN_KEY,
        writer_api_keys=[WRITER_KEY],
        erasure_key="erasure-test-key-0123456789",
        model_epochs=3,
        model_poll_seconds=POLL_SECONDS,
        refresh_schedule="off",
    )
    assert asyncio.run(migrate(settings.store_url)).ok
    asyncio.run(seed_demo(settings, seed=5, users=120, products=80, events=4_000))
    assert asyncio.run(train_once(settings)) == 0
    return settings


async def stored_of(settings: Settings, user_id: str) -> tuple[int, int, int]:
    """(interactions, audit records, profiles) the store holds for the customer."""
    store = open_store(settings.store_url, timeout_ms=10_000)
    await store.open()
    try:
        events = await store.user_interactions(user_id, limit=10_000)
        records = await store.customer_audit(user_id, limit=10_000)
        profile = await store.get_profile(user_id)
        return len(events), len(records), int(profile is not None)
    finally:
        await store.close()


def an_event(user_id: str) -> dict:
    return {
        "event_id": f"late-{uuid.uuid4().hex}",
        "user_id": user_id,
        "type": "product_view",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "data": {"productId": "prod_0001", "viewDuration": 30},
    }


def test_erasure_forgets_the_customer_everywhere(world: Settings, rabbitmq_url: str):
    admin = {"X-API-Key": ADMIN_KEY}
    # Replica A keeps its audit records in its buffer (a long flush): erasure must purge them.
    held = world.model_copy(update={"audit_flush_ms": 600_000, "audit_batch_size": 100_000})
    with (
        TestClient(create_app(held), raise_server_exceptions=False) as replica_a,
        TestClient(create_app(world), raise_server_exceptions=False) as replica_b,
    ):
        posted = replica_a.post(
            "/api/v1/interactions", json=an_event(CUSTOMER), headers={"X-API-Key": WRITER_KEY}
        )
        assert posted.status_code == 202, posted.text
        for replica in (replica_a, replica_b):
            assert replica.get(f"{RECS}/{CUSTOMER}").json()["strategy"] == "personalized"
        replica_b.portal.call(replica_b.app.state.components.audit.flush)
        interactions, audit_records, profiles = asyncio.run(stored_of(world, CUSTOMER))
        assert interactions > 1 and audit_records == 1  # B's record stored, A's buffered
        assert profiles == 1  # the demo world's

        erased = replica_a.delete(f"/api/v1/customers/{CUSTOMER}", headers=admin)

        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        assert receipt["already_erased"] is False
        assert receipt["deleted"] == {
            "interactions": interactions,
            "audit_records": 2,
            "profiles": 1,
        }
        assert len(receipt["tombstone"]) == 64 and CUSTOMER not in receipt["tombstone"]
        assert asyncio.run(stored_of(world, CUSTOMER)) == (0, 0, 0)
        # The replica that erased masks at once; the other within its poll interval.
        assert replica_a.get(f"{RECS}/{CUSTOMER}").json()["strategy"] == "popular"
        deadline = time.monotonic() + POLL_SECONDS + 1.0
        while replica_b.get(f"{RECS}/{CUSTOMER}").json()["strategy"] != "popular":
            assert time.monotonic() < deadline, "replica B still personalises after erasure"
            time.sleep(0.05)
        assert replica_b.get(f"{RECS}/user_00008").json()["strategy"] == "personalized"

        # Lists served to the erased customer since are recorded, but not against their id:
        # replica B's, served before it read the tombstone, are written after it did.
        for replica in (replica_a, replica_b):
            replica.portal.call(replica.app.state.components.audit.flush)
        assert asyncio.run(stored_of(world, CUSTOMER)) == (0, 0, 0)
        again = replica_b.delete(f"/api/v1/customers/{CUSTOMER}", headers=admin).json()
        assert again["already_erased"] is True and again["tombstone"] == receipt["tombstone"]
        assert again["deleted"] == {"interactions": 0, "audit_records": 0, "profiles": 0}

        late = replica_b.post(
            "/api/v1/interactions",
            json=[an_event(CUSTOMER), an_event("user_00009")],
            headers={"X-API-Key": WRITER_KEY},
        )
        assert late.status_code == 202
        assert late.json() == {"accepted": 1, "duplicates": 0, "dropped_erased": 1}

    assert asyncio.run(publish_late_event(world, rabbitmq_url)) == 1
    assert asyncio.run(stored_of(world, CUSTOMER)) == (0, 0, 0)

    # A late event that slipped into the store (a race with the erasure) stays out of the model.
    asyncio.run(insert_directly(world, parse_event(an_event(CUSTOMER))))
    before = current_version(world.model_dir)
    assert asyncio.run(train_once(world)) == 0
    after = current_version(world.model_dir)
    assert after != before
    assert CUSTOMER in load_version(world.model_dir, before).users
    assert CUSTOMER not in load_version(world.model_dir, after).users
    assert "user_00008" in load_version(world.model_dir, after).users


async def publish_late_event(settings: Settings, rabbitmq_url: str) -> int:
    """Publish one event for the erased customer and one for another; the consumer (with the
    service's admission rules) drops the first. Returns how many it dropped."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    config = IngestConfig(
        rabbitmq_url=rabbitmq_url, batch_size=10, batch_timeout_ms=50, name_prefix=prefix
    )
    store = compose.store(settings, "worker")
    catalog = compose.catalog(settings)
    await store.open()
    consumer = InteractionConsumer(config, store, compose.event_admission(settings, catalog, store))
    await consumer.start()
    try:
        late, other = parse_event(an_event(CUSTOMER)), parse_event(an_event("user_00009"))
        async with InteractionPublisher(config) as publisher:
            await publisher.publish([late, other])
        deadline = time.monotonic() + 20
        while consumer.stats.received < 2:
            assert time.monotonic() < deadline, consumer.stats
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await store.close()
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await delete_topology(await connection.channel(), Topology.of(config))
    assert consumer.stats.stored == 1
    return consumer.stats.dropped_erased


async def insert_directly(settings: Settings, event) -> None:
    store = open_store(settings.store_url, timeout_ms=10_000)
    await store.open()
    try:
        await store.insert_many([event])
    finally:
        await store.close()
