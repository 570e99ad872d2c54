"""`migrate`: an explicit, idempotent step that accepts a seeded database as it is.

The MongoDB cases run against the nx-27017 stand-in, which ignores index names (it names every index
itself), partial filters and key directions; docs/STORES.md says what that leaves unverified.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongo_stand_in import STORE_OPTIONS
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase

from finverse_reco.cli import main
from finverse_reco.events import parse_event
from finverse_reco.store import InsertResult, StoreUnavailable, open_store
from finverse_reco.store.migrate import MONGO_COLLECTIONS, migrate

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
# (collection, key pattern) of every declared index: the interactions' and the profiles'.
DECLARED = {
    (declared.collection, spec.label) for declared in MONGO_COLLECTIONS for spec in declared.indexes
}
# What the seed's loader created: default names, no event_id anywhere.
SEED_INDEXES = ["timestamp", "type", "data.productId", "user_id", "session_id"]


def seed_document(n: int) -> dict[str, Any]:
    return {
        "user_id": f"seed_user_{n % 3}",
        "session_id": f"seed_session_{n % 2}",
        "type": "product_view",
        "timestamp": T0 + timedelta(minutes=n),
        "data": {"productId": f"prod_{n:04}", "viewDuration": 12.5},
    }


def view(event_id: str, user: str = "seed_user_0", minute: int = 100):
    return parse_event(
        {
            "event_id": event_id,
            "user_id": user,
            "type": "product_view",
            "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
            "data": {"productId": "prod_new"},
        }
    )


@pytest.fixture
async def database(mongo_url: str) -> AsyncIterator[tuple[str, AsyncDatabase[dict[str, Any]]]]:
    """A database of its own on the stand-in: its URL and a plain client on it."""
    url = f"{mongo_url}/finverse_migrate_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    database = client.get_default_database()
    yield url, database
    await client.drop_database(database)
    await client.close()


async def index_listing(database: AsyncDatabase[dict[str, Any]]) -> list[dict[str, Any]]:
    return await (await database.interactions.list_indexes()).to_list()


@pytest.mark.mongo
async def test_a_seeded_database_is_migrated_and_then_ingests_exactly_once(database) -> None:
    url, db = database
    await db.interactions.insert_many([seed_document(n) for n in range(12)])
    for field in SEED_INDEXES:
        await db.interactions.create_index(field)  # the server's default names
    seed_names = {ix["name"] for ix in await index_listing(db)} - {"_id_"}

    report = await migrate(url, **STORE_OPTIONS)

    assert report.ok, report
    states = {state.keys: state for state in report.indexes if state.collection == "interactions"}
    assert {(state.collection, state.keys) for state in report.created} == {
        ("interactions", "event_id"),
        ("interactions", "user_id, timestamp, _id"),
        ("interactions", "session_id, timestamp, _id"),
        ("customer_profiles", "user_id"),
    }
    for field in ("timestamp", "type", "data.productId"):  # kept under the seed's names
        assert states[field].status == "present" and states[field].name in seed_names
    for field in ("user_id", "session_id"):  # not needed any more, and left alone
        assert states[field].status == "undeclared" and states[field].name in seed_names

    store = open_store(url, **STORE_OPTIONS)
    await store.open()
    try:
        batch = [view("e1"), view("e2", minute=101), view("e1")]
        assert await store.insert_many(batch) == InsertResult(inserted=2, duplicates=1)
        assert await store.insert_many(batch) == InsertResult(inserted=0, duplicates=3)
        assert await store.count() == 12 + 2
        assert await db.interactions.count_documents({"event_id": "e1"}) == 1
        # Seed documents read as events too (their ids are derived from their content).
        recent = await store.user_interactions("seed_user_0", limit=3)
        assert [e.data.productId for e in recent] == ["prod_new", "prod_new", "prod_0009"]
    finally:
        await store.close()


@pytest.mark.mongo
async def test_running_migrate_twice_changes_nothing(database) -> None:
    url, db = database
    first = await migrate(url, **STORE_OPTIONS)
    listed = await index_listing(db)

    second = await migrate(url, **STORE_OPTIONS)

    assert first.ok and second.ok
    assert {(state.collection, state.keys) for state in first.created} == DECLARED
    assert second.created == ()
    assert {(s.collection, s.keys): s.status for s in second.indexes} == dict.fromkeys(
        DECLARED, "present"
    )
    assert await index_listing(db) == listed


@pytest.mark.mongo
async def test_the_store_opens_without_creating_indexes_and_will_not_write_without_them(
    database,
) -> None:
    url, db = database
    store = open_store(url, **STORE_OPTIONS)
    await store.open()
    try:
        await store.ping()
        assert await store.user_interactions("u1") == []
        with pytest.raises(StoreUnavailable, match="finverse-reco migrate"):
            await store.insert_many([view("e1")])
    finally:
        await store.close()
    assert [ix["name"] for ix in await index_listing(db)] in ([], ["_id_"])
    assert await db.interactions.count_documents({}) == 0


@pytest.mark.mongo
async def test_check_only_reports_what_is_missing_and_creates_nothing(database) -> None:
    url, db = database
    await db.interactions.create_index("timestamp")

    report = await migrate(url, check_only=True, **STORE_OPTIONS)

    assert not report.ok
    statuses = {(state.collection, state.keys): state.status for state in report.indexes}
    assert statuses == {
        **dict.fromkeys(DECLARED, "missing"),
        ("interactions", "timestamp"): "present",
    }
    assert len(await index_listing(db)) == 2  # _id_ and timestamp


@pytest.mark.mongo
async def test_an_index_on_the_same_keys_that_cannot_do_the_job_is_a_conflict_left_alone(
    database,
) -> None:
    url, db = database
    await db.interactions.create_index("event_id")  # not unique: no idempotency

    report = await migrate(url, **STORE_OPTIONS)

    assert not report.ok
    (event_id,) = [state for state in report.indexes if state.keys == "event_id"]
    assert event_id.status == "conflict"
    assert "not unique" in event_id.detail
    others = {(state.collection, state.keys): state.status for state in report.indexes}
    assert others | {("interactions", "event_id"): "created"} == dict.fromkeys(DECLARED, "created")
    unique = [ix for ix in await index_listing(db) if ix["key"] == {"event_id": 1}]
    assert [ix.get("unique", False) for ix in unique] == [False]  # never dropped or replaced


@pytest.mark.mongo
async def test_stored_duplicates_fail_the_unique_index_build_with_the_reason(database) -> None:
    url, db = database
    copies = [{**seed_document(n), "event_id": "same-id"} for n in range(2)]
    await db.interactions.insert_many(copies)

    report = await migrate(url, **STORE_OPTIONS)

    assert not report.ok
    (event_id,) = [state for state in report.indexes if state.keys == "event_id"]
    assert event_id.status == "failed"
    assert "UNIQUE" in event_id.detail.upper()


async def test_sqlite_migrate_creates_the_schema_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/interactions.db"

    check = await migrate(url, check_only=True)
    assert not (tmp_path / "interactions.db").exists()  # a check writes nothing
    first = await migrate(url)
    second = await migrate(url)

    assert not check.ok and {state.status for state in check.indexes} == {"missing"}
    assert first.ok and second.ok
    names = {state.name for state in first.created}
    assert {"interactions", "interactions_user_ts", "interactions_session_ts"} <= names
    assert second.created == ()
    assert {state.name for state in second.indexes} == names


@pytest.mark.mongo
def test_the_command_exits_1_on_a_conflict_and_0_once_resolved(mongo_url, monkeypatch, capsys):
    url = f"{mongo_url}/finverse_migrate_cli_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FINVERSE_STORE_URL", url)
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    collection = client.get_default_database().interactions
    try:
        collection.create_index("event_id")  # not unique
        assert run_cli("migrate", "--check") == 1
        assert run_cli("migrate") == 1
        assert "conflict   interactions (event_id)" in capsys.readouterr().err
        collection.drop_index([("event_id", 1)])
        assert run_cli("migrate") == 0
        assert run_cli("migrate", "--check") == 0
        assert "checked: nothing missing" in capsys.readouterr().err
    finally:
        client.drop_database(client.get_default_database())
        client.close()


def run_cli(*arguments: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(arguments))
    return int(exited.value.code)
