"""A store that is down, or goes away and comes back: StoreUnavailable with a reason, then recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import InteractionStore, StoreUnavailable, open_store
from finverse_reco.store.migrate import migrate
from finverse_reco.store.mongo import MongoInteractionStore
from finverse_reco.store.sqlite import SQLiteInteractionStore

RECOVERY_SECONDS = 20.0


def view(event_id: str) -> InteractionEvent:
    return parse_event(
        {
            "event_id": event_id,
            "user_id": "u1",
            "session_id": "s1",
            "type": "product_view",
            "timestamp": datetime(2025, 3, 1, tzinfo=UTC).isoformat(),
            "data": {"productId": "p1"},
        }
    )


async def assert_every_call_unavailable(store: InteractionStore, reason: str) -> None:
    calls = {
        "ping": store.ping(),
        "insert_many": store.insert_many([view("e-down")]),
        "user_interactions": store.user_interactions("u1"),
        "session_interactions": store.session_interactions("s1"),
        "count": store.count(),
        "scan": anext(aiter(store.scan())),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable, match=reason):
            await call
        assert name  # keeps the failing call's name in the traceback


async def wait_until_available(store: InteractionStore) -> None:
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        try:
            await store.ping()
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.mongo
async def test_mongo_down_at_start_then_up(
    start_stand_in: Callable[..., Any], closed_port: int
) -> None:
    port = closed_port
    store = MongoInteractionStore.from_url(f"mongodb://127.0.0.1:{port}/app", timeout_ms=300)

    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
        await store.open()
    await assert_every_call_unavailable(store, f"127.0.0.1:{port}")

    start_stand_in(port=port)
    try:
        await wait_until_available(store)
        # Nothing builds an index by itself: writing waits for migrate's unique event_id index.
        with pytest.raises(StoreUnavailable, match="migrate"):
            await store.insert_many([view("e1")])
        assert (await migrate(f"mongodb://127.0.0.1:{port}/app")).ok
        assert (await store.insert_many([view("e1"), view("e1")])).duplicates == 1
        assert await store.count() == 1
    finally:
        await store.close()


@pytest.mark.mongo
async def test_mongo_restart_shows_outage_then_recovers(
    start_stand_in: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_stand_in(database=str(tmp_path / "mongo.db"))
    assert (await migrate(f"{server.url}/app")).ok
    store = MongoInteractionStore.from_url(f"{server.url}/app", timeout_ms=300)
    await store.open()
    try:
        await store.insert_many([view("e1")])

        server.stop()  # SIGTERM
        await assert_every_call_unavailable(store, f"127.0.0.1:{server.port}")

        server.start()  # same port, same database file
        await wait_until_available(store)
        assert [e.event_id for e in await store.user_interactions("u1")] == ["e1"]
        assert (await store.insert_many([view("e1"), view("e2")])).inserted == 1
        assert await store.count() == 2
    finally:
        await store.close()


@pytest.mark.mongo
async def test_mongo_credentials_stay_out_of_reasons(closed_port: int) -> None:
    store = MongoInteractionStore.from_url(
        f"mongodb://reco:s3cret@127.0.0.1:{closed_port}/app", timeout_ms=200
    )
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    await store.close()
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in repr(store)


async def test_sqlite_unusable_path_is_unavailable_until_it_is_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store wants a directory")
    store = SQLiteInteractionStore(blocker / "interactions.db")

    with pytest.raises(StoreUnavailable, match="not-a-directory"):
        await store.open()
    await assert_every_call_unavailable(store, "not-a-directory")

    blocker.unlink()
    await store.ping()  # tries to open again
    try:
        assert (await store.insert_many([view("e1")])).inserted == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/interactions.db", Path("data/interactions.db")),
        ("sqlite:////var/lib/finverse/interactions.db", Path("/var/lib/finverse/interactions.db")),
    ],
)
def test_sqlite_url_forms(url: str, path: Path) -> None:
    store = open_store(url)
    assert isinstance(store, SQLiteInteractionStore)
    assert store.path == path


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "sqlite:///x.db?mode=ro"])
def test_sqlite_urls_without_a_file_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        open_store(url)


def test_mongo_url_and_options_pick_the_mongo_store() -> None:
    store = open_store("mongodb://127.0.0.1:1/db", timeout_ms=123, pool_size=7)
    assert isinstance(store, MongoInteractionStore)
    assert (store.options.timeout_ms, store.options.pool_size) == (123, 7)


async def test_invalid_mongo_url_is_a_clear_error() -> None:
    store = MongoInteractionStore.from_url("mongodb://127.0.0.1:notaport/db")
    with pytest.raises(ValueError, match="invalid MongoDB URL"):
        await store.open()
