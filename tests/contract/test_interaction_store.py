"""The `InteractionStore` contract, run against every implementation (SQLite and MongoDB alike)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finverse_reco.events import InteractionColumns, InteractionEvent, parse_event
from finverse_reco.store import (
    InsertResult,
    InteractionStore,
    StoreUnavailable,
)

# Millisecond-aligned times: MongoDB keeps dates to the millisecond, and the contract is the same
# for both stores.
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def event(
    event_id: str,
    *,
    user: str = "u1",
    session: str | None = "s1",
    kind: str = "product_view",
    at: datetime = T0,
    **data: Any,
) -> InteractionEvent:
    if kind not in {"search", "comparison"}:
        data.setdefault("productId", "p1")
    raw: dict[str, Any] = {
        "event_id": event_id,
        "user_id": user,
        "type": kind,
        "timestamp": at.isoformat(),
        "data": data,
    }
    if session is not None:
        raw["session_id"] = session
    return parse_event(raw)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


async def scanned(store: InteractionStore, **window: Any) -> list[InteractionColumns]:
    return [batch async for batch in store.scan(**window)]


def ids(events: list[InteractionEvent]) -> list[str]:
    return [e.event_id for e in events]


def rows(batches: list[InteractionColumns]) -> list[dict[str, Any]]:
    """Every scanned interaction as one dict of its columns' values (NaN durations as None)."""
    found = []
    for batch in batches:
        for row in range(len(batch)):
            duration = float(batch.view_durations[row])
            found.append(
                {
                    "user_id": batch.user_ids[row],
                    "type": str(batch.types[row]),
                    "timestamp": float(batch.timestamps[row]),
                    "touched": batch.touched(row),
                    "view_duration": None if math.isnan(duration) else duration,
                    "category": batch.categories[row],
                    "institution": batch.institutions[row],
                    "query": batch.queries[row],
                    "demographics": batch.demographics[row],
                }
            )
    return found


def minutes_of(batches: list[InteractionColumns]) -> list[int]:
    """Scanned interactions by their timestamp in minutes after T0 (scan carries no event_id)."""
    return sorted(int((row["timestamp"] - T0.timestamp()) // 60) for row in rows(batches))


async def test_implements_the_protocol(store: InteractionStore) -> None:
    assert isinstance(store, InteractionStore)


async def test_open_twice_and_ping(store: InteractionStore) -> None:
    await store.open()
    await store.ping()
    assert await store.count() == 0


async def test_reopening_keeps_the_data(new_store: Callable[[], InteractionStore]) -> None:
    first = new_store()
    await first.open()
    await first.insert_many([event("e1")])
    await first.close()
    second = new_store()
    await second.open()
    try:
        assert ids(await second.user_interactions("u1")) == ["e1"]
        assert (await second.insert_many([event("e1")])).duplicates == 1
    finally:
        await second.close()


async def test_round_trip_keeps_every_field(store: InteractionStore) -> None:
    full = event(
        "e-full",
        category="credit_card",
        institution="Banque Alpine",
        viewDuration=42.5,
        query="cashback",
        userDemographics={"age_group": "25-34", "income_range": "50k-75k", "location": "Lyon"},
    ).enriched(queue_source="product_views", received_at=minutes(1))
    comparison = event("e-cmp", kind="comparison", at=minutes(2), productIDs=["p2", "p3"])
    search = event("e-search", kind="search", session=None, at=minutes(3), query="mortgage")

    result = await store.insert_many([full, comparison, search])

    assert result == InsertResult(inserted=3, duplicates=0)
    assert await store.user_interactions("u1") == [search, comparison, full]
    stored = [full, comparison, search]
    by_time = sorted(rows(await scanned(store)), key=lambda row: row["timestamp"])
    assert by_time == sorted(
        rows([InteractionColumns.from_events(stored)]), key=lambda row: row["timestamp"]
    )
    assert by_time[0]["demographics"]["location"] == "Lyon"


async def test_unicode_survives(store: InteractionStore) -> None:
    text = "crédit immobilier — 住宅ローン 🏠"
    stored = event(
        "e-unicode",
        kind="search",
        query=text,
        userDemographics={"location": "Zürich ☀"},
        institution="Caisse d'Épargne",
    )
    await store.insert_many([stored])

    (found,) = await store.user_interactions("u1")
    assert found.data.query == text
    assert found.data.userDemographics is not None
    assert found.data.userDemographics.location == "Zürich ☀"
    (batch,) = await scanned(store)
    assert batch.queries[0] == text
    assert batch.institutions[0] == "Caisse d'Épargne"


async def test_empty_store_answers_empty(store: InteractionStore) -> None:
    assert await store.user_interactions("nobody") == []
    assert await store.session_interactions("no-session") == []
    assert await store.count() == 0
    assert await store.count(since=T0) == 0
    assert await scanned(store) == []


async def test_empty_batch_stores_nothing(store: InteractionStore) -> None:
    assert await store.insert_many([]) == InsertResult(inserted=0, duplicates=0)
    assert await store.count() == 0


async def test_duplicates_across_batches_are_counted_not_stored(store: InteractionStore) -> None:
    first = await store.insert_many([event("e1"), event("e2", at=minutes(1))])
    again = await store.insert_many([event("e2", at=minutes(1)), event("e3", at=minutes(2))])

    assert first == InsertResult(inserted=2, duplicates=0)
    assert again == InsertResult(inserted=1, duplicates=1)
    assert await store.count() == 3
    assert ids(await store.user_interactions("u1")) == ["e3", "e2", "e1"]


async def test_duplicates_within_a_batch_the_first_copy_wins(store: InteractionStore) -> None:
    original = event("e1", productId="p-original")
    redelivered_changed = event("e1", at=minutes(5), productId="p-changed")

    result = await store.insert_many([original, event("e2"), redelivered_changed])

    assert result == InsertResult(inserted=2, duplicates=1)
    stored = {e.event_id: e for e in await store.user_interactions("u1")}
    assert stored["e1"] == original
    # The dropped copy must not leave a trace anywhere, the training scan included.
    products = {product for row in rows(await scanned(store)) for product in row["touched"]}
    assert "p-changed" not in products and "p-original" in products


async def test_user_interactions_newest_first_with_limit(store: InteractionStore) -> None:
    await store.insert_many(
        [
            event("e-mid", at=minutes(10)),
            event("e-old", at=minutes(0)),
            event("e-new", at=minutes(20)),
            event("e-other-user", user="u2", at=minutes(30)),
        ]
    )

    assert ids(await store.user_interactions("u1")) == ["e-new", "e-mid", "e-old"]
    assert ids(await store.user_interactions("u1", limit=2)) == ["e-new", "e-mid"]
    assert ids(await store.user_interactions("u2")) == ["e-other-user"]


async def test_same_timestamp_keeps_insertion_order(store: InteractionStore) -> None:
    await store.insert_many([event("e-a"), event("e-b")])
    await store.insert_many([event("e-c")])

    assert ids(await store.user_interactions("u1")) == ["e-c", "e-b", "e-a"]
    assert ids(await store.session_interactions("s1")) == ["e-a", "e-b", "e-c"]


async def test_session_interactions_oldest_first_keeping_the_most_recent(
    store: InteractionStore,
) -> None:
    await store.insert_many(
        [
            event("e3", at=minutes(3)),
            event("e1", at=minutes(1)),
            event("e2", at=minutes(2)),
            event("e-elsewhere", session="s2", at=minutes(4)),
            event("e-no-session", session=None, at=minutes(5)),
        ]
    )

    assert ids(await store.session_interactions("s1")) == ["e1", "e2", "e3"]
    assert ids(await store.session_interactions("s1", limit=2)) == ["e2", "e3"]
    assert ids(await store.session_interactions("s2")) == ["e-elsewhere"]


async def test_count_since_is_inclusive(store: InteractionStore) -> None:
    await store.insert_many([event(f"e{i}", at=minutes(i)) for i in range(10)])

    assert await store.count() == 10
    assert await store.count(since=minutes(4)) == 6
    assert await store.count(since=minutes(100)) == 0


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
async def test_scan_streams_every_document_once(store: InteractionStore, batch_size: int) -> None:
    stored = [event(f"e{i:02}", user=f"u{i % 3}", at=minutes(i)) for i in range(30)]
    await store.insert_many(stored)

    batches = await scanned(store, batch_size=batch_size)

    assert all(len(batch) == batch_size for batch in batches[:-1])
    assert 1 <= len(batches[-1]) <= batch_size
    assert minutes_of(batches) == list(range(30))
    assert all(batch.skipped == 0 for batch in batches)


async def test_scan_window_includes_since_excludes_until(store: InteractionStore) -> None:
    await store.insert_many([event(f"e{i:02}", at=minutes(i)) for i in range(20)])

    window = await scanned(store, since=minutes(5), until=minutes(12), batch_size=3)
    after = await scanned(store, since=minutes(15))
    before = await scanned(store, until=minutes(2))

    assert minutes_of(window) == list(range(5, 12))
    assert minutes_of(after) == list(range(15, 20))
    assert minutes_of(before) == [0, 1]
    assert await scanned(store, since=minutes(50)) == []


async def test_large_batch(store: InteractionStore) -> None:
    many = [
        event(f"e{i}", user=f"u{i % 97}", session=f"s{i % 389}", at=T0 + timedelta(seconds=i))
        for i in range(10_000)
    ]

    first = await store.insert_many(many)
    again = await store.insert_many(many)

    assert first == InsertResult(inserted=10_000, duplicates=0)
    assert again == InsertResult(inserted=0, duplicates=10_000)
    assert await store.count() == 10_000
    assert sum(len(batch) for batch in await scanned(store, batch_size=4096)) == 10_000


async def test_concurrent_writers_store_each_event_once(store: InteractionStore) -> None:
    writers, per_writer, overlap = 4, 300, 150
    batches = [
        [
            event(f"e{i}", user=f"u{i % 11}", at=T0 + timedelta(seconds=i))
            for i in range(w * overlap, w * overlap + per_writer)
        ]
        for w in range(writers)
    ]
    distinct = len({e.event_id for batch in batches for e in batch})

    results = await asyncio.gather(*(store.insert_many(batch) for batch in batches))

    assert sum(r.inserted for r in results) == distinct
    assert sum(r.duplicates for r in results) == writers * per_writer - distinct
    assert await store.count() == distinct


async def test_limits_must_be_positive(store: InteractionStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.user_interactions("u1", limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.session_interactions("s1", limit=-1)
    with pytest.raises(ValueError, match="batch_size"):
        await scanned(store, batch_size=0)


async def test_unopened_store_is_unavailable(new_store: Callable[[], InteractionStore]) -> None:
    unopened = new_store()

    with pytest.raises(StoreUnavailable, match="not open"):
        await unopened.ping()
    with pytest.raises(StoreUnavailable, match="not open"):
        await unopened.insert_many([event("e1")])
