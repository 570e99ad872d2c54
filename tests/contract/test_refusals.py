"""Events a store refuses for good: reported one by one (`EventsRefused`), the rest stored.

The refusal is real: the test installs a constraint in the database itself, a unique index on
(user_id, timestamp) — "one event per customer and instant" — which both SQLite and the MongoDB
stand-in enforce. Schema validators (MongoDB's code 121) are not enforced by the stand-in, so the
MongoDB classification of write error codes is checked with the server's reply shape below.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongo_stand_in import STORE_OPTIONS
from pymongo import AsyncMongoClient

from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import (
    EventsRefused,
    InsertResult,
    InteractionStore,
    StoreUnavailable,
)
from finverse_reco.store.migrate import migrate
from finverse_reco.store.mongo import MongoInteractionStore

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def view(event_id: str, user: str = "u1", minute: int = 0) -> InteractionEvent:
    return parse_event(
        {
            "event_id": event_id,
            "user_id": user,
            "type": "product_view",
            "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
            "data": {"productId": f"p-{event_id}"},
        }
    )


async def install_one_event_per_instant(store_url: str) -> None:
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            db.execute("CREATE UNIQUE INDEX one_per_instant ON interactions (user_id, ts_us)")
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store_url)
    try:
        collection = client.get_default_database().interactions
        await collection.create_index([("user_id", 1), ("timestamp", 1)], unique=True)
    finally:
        await client.close()


async def test_a_refused_event_is_reported_and_the_rest_stored(
    store: InteractionStore, store_url: str
) -> None:
    await install_one_event_per_instant(store_url)
    assert await store.insert_many([view("e1", minute=0)]) == InsertResult(1, 0)
    batch = [
        view("e2", minute=0),  # same customer and instant as e1: refused
        view("e3", minute=1),
        view("e1", minute=0),  # a redelivery: a duplicate, not a refusal
        view("e4", user="u2", minute=0),
        view("e3", minute=1),  # repeated within the batch
    ]

    with pytest.raises(EventsRefused) as raised:
        await store.insert_many(batch)

    assert raised.value.stored == InsertResult(inserted=2, duplicates=2)
    (refusal,) = raised.value.refused
    assert (refusal.index, refusal.event_id) == (0, "e2")
    assert "user_id" in refusal.reason  # the constraint's columns, or the index named after them
    assert not isinstance(raised.value, StoreUnavailable)
    assert sorted(e.event_id for e in await store.user_interactions("u1")) == ["e1", "e3"]

    # The same batch again: nothing new, the same refusal (retrying would not help).
    with pytest.raises(EventsRefused) as again:
        await store.insert_many(batch)
    assert again.value.stored == InsertResult(inserted=0, duplicates=4)
    assert [r.event_id for r in again.value.refused] == ["e2"]
    assert await store.count() == 3


async def test_a_batch_without_offending_events_is_not_affected(
    store: InteractionStore, store_url: str
) -> None:
    await install_one_event_per_instant(store_url)
    batch = [view(f"e{n}", minute=n) for n in range(5)]
    assert await store.insert_many(batch) == InsertResult(5, 0)
    assert await store.insert_many(batch) == InsertResult(0, 5)


# --- MongoDB: the write errors the stand-in cannot produce, in the reply shape of MongoDB 6/7 ------


@pytest.fixture
async def mongo_store(mongo_url: str) -> AsyncIterator[MongoInteractionStore]:
    url = f"{mongo_url}/finverse_refusals_{uuid.uuid4().hex[:12]}"
    assert (await migrate(url, **STORE_OPTIONS)).ok
    store = MongoInteractionStore.from_url(url, **STORE_OPTIONS)
    await store.open()
    yield store
    await store.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await client.drop_database(client.get_default_database())
    await client.close()


def write_error(index: int, code: int, errmsg: str) -> dict[str, Any]:
    return {"index": index, "code": code, "errmsg": errmsg}


@pytest.mark.mongo
async def test_mongo_validator_and_size_errors_refuse_only_their_events(
    mongo_store: MongoInteractionStore,
) -> None:
    stored = view("stored")
    await mongo_store.insert_many([stored])
    documents = [view(f"e{n}").to_document() for n in range(4)] + [stored.to_document()]
    details = {
        "nInserted": 1,
        "writeErrors": [
            write_error(0, 121, "Document failed validation"),
            write_error(2, 10334, "BSONObj size: 17000000 is invalid"),
            write_error(3, 11000, "E11000 duplicate key error ... index: tenant_1_ref_1"),
            write_error(4, 11000, "E11000 duplicate key error ... index: event_id_1"),
        ],
        "writeConcernErrors": [],
    }

    with pytest.raises(EventsRefused) as raised:
        await mongo_store._sort_write_errors(mongo_store._ready(), documents, details)

    assert raised.value.stored == InsertResult(inserted=1, duplicates=1)
    refused = {(r.index, r.event_id): r.reason for r in raised.value.refused}
    assert set(refused) == {(0, "e0"), (2, "e2"), (3, "e3")}
    assert "121 DocumentValidationFailure" in refused[(0, "e0")]
    assert "10334 BSONObjectTooLarge" in refused[(2, "e2")]


@pytest.mark.mongo
async def test_mongo_a_transient_write_error_retries_the_whole_batch(
    mongo_store: MongoInteractionStore,
) -> None:
    documents = [view(f"e{n}").to_document() for n in range(3)]
    details = {
        "nInserted": 1,
        "writeErrors": [
            write_error(1, 121, "Document failed validation"),
            write_error(2, 11602, "operation was interrupted because of a stepdown"),
        ],
        "writeConcernErrors": [],
    }

    with pytest.raises(StoreUnavailable, match="11602 InterruptedDueToReplStateChange"):
        await mongo_store._sort_write_errors(mongo_store._ready(), documents, details)
