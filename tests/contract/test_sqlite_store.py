"""What only the SQLite store does: batches of several statements, refusals by constraints of the
file itself, files from earlier versions."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import (
    EventsRefused,
    InsertResult,
    StoreUnavailable,
)
from finverse_reco.store import sqlite as sqlite_store
from finverse_reco.store.sqlite import SQLiteInteractionStore

# What earlier versions added for a popularity query nothing calls any more.
EARLIER_PRODUCT_ROWS = """
CREATE TABLE interaction_products (
    interaction_id INTEGER NOT NULL REFERENCES interactions (id),
    product_id TEXT NOT NULL,
    PRIMARY KEY (interaction_id, product_id)
) WITHOUT ROWID;
CREATE TRIGGER interactions_products AFTER INSERT ON interactions
BEGIN
    INSERT OR IGNORE INTO interaction_products (interaction_id, product_id)
    SELECT NEW.id, value FROM json_each(NEW.body, '$.data.productId');
END;
"""


def event(event_id: str, *, kind: str = "product_view", **data: Any) -> InteractionEvent:
    raw = {"event_id": event_id, "user_id": "u1", "type": kind, "timestamp": "2025-03-01T09:30:00Z"}
    return parse_event({**raw, "data": data})


def stored_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM interactions ORDER BY id")]


@pytest.fixture
async def two_row_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SQLiteInteractionStore]:
    """A store whose statements hold two rows each, so that a batch takes several."""
    monkeypatch.setattr(sqlite_store, "STATEMENT_ROWS", 2)
    store = SQLiteInteractionStore(tmp_path / "events.db")
    await store.open()
    yield store
    await store.close()


async def test_a_batch_of_several_statements_is_one_transaction(
    two_row_statements: SQLiteInteractionStore,
) -> None:
    store = two_row_statements
    first = [event("e1", productId="p1"), event("e2", productId="p2")]
    assert (await store.insert_many(first)).inserted == 2
    batch = [
        event("e3", productId="p3"),
        event("e1", productId="p-changed"),  # a duplicate: stored before, no new products
        event("e4", kind="comparison", productIDs=["p1", "p4"]),
        event("e3", productId="p-again"),  # repeated within the batch: the first copy wins
        event("e5", kind="search", query="cards"),
    ]
    result = await store.insert_many(batch)
    assert (result.inserted, result.duplicates) == (3, 2)
    assert await store.count() == 5
    assert sorted(stored_ids(store.path)) == ["e1", "e2", "e3", "e4", "e5"]
    stored = {e.event_id: e for e in await store.user_interactions("u1")}
    assert stored["e1"].data.productId == "p1" and stored["e3"].data.productId == "p3"


async def test_a_refused_row_leaves_the_rest_of_a_several_statement_batch_stored(
    two_row_statements: SQLiteInteractionStore,
) -> None:
    store = two_row_statements
    with sqlite3.connect(store.path) as db:  # refuses the third row, in the second statement
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON interactions WHEN NEW.event_id = 'e3'"
            " BEGIN SELECT RAISE(ABORT, 'e3 is not welcome here'); END"
        )
    batch = [event(f"e{n}", productId=f"p{n}") for n in range(1, 5)]

    with pytest.raises(EventsRefused) as raised:
        await store.insert_many([*batch, batch[0]])

    assert raised.value.stored == InsertResult(inserted=3, duplicates=1)
    (refusal,) = raised.value.refused
    assert (refusal.index, refusal.event_id) == (2, "e3")
    assert "e3 is not welcome here" in refusal.reason
    assert sorted(stored_ids(store.path)) == ["e1", "e2", "e4"]


async def test_a_failing_statement_rolls_back_the_whole_batch(
    two_row_statements: SQLiteInteractionStore,
) -> None:
    store = two_row_statements
    with sqlite3.connect(store.path) as db:  # an error, not a constraint, in the second statement
        db.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON interactions WHEN NEW.event_id = 'e3'"
            " BEGIN SELECT json('{not json'); END"
        )
    with pytest.raises(StoreUnavailable, match="malformed JSON"):
        await store.insert_many([event(f"e{n}", productId=f"p{n}") for n in range(1, 5)])
    assert await store.count() == 0
    assert stored_ids(store.path) == []


async def test_a_check_constraint_refuses_only_its_rows(tmp_path: Path) -> None:
    # The table as it would be with a CHECK an operator added (SQLite cannot add one later).
    path = tmp_path / "events.db"
    schema = sqlite_store.SCHEMA.replace(
        "    body TEXT NOT NULL\n",
        "    body TEXT NOT NULL CHECK (json_extract(body, '$.data.institution') IS NOT 'Blocked')\n",
    )
    assert schema != sqlite_store.SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(schema)
    store = SQLiteInteractionStore(path)
    await store.open()
    try:
        batch = [
            event("ok-1", productId="p1"),
            event("blocked", productId="p2", institution="Blocked"),
            event("ok-2", productId="p3", institution="Open"),
        ]
        with pytest.raises(EventsRefused) as raised:
            await store.insert_many(batch)
        assert raised.value.stored == InsertResult(inserted=2, duplicates=0)
        assert [(r.index, r.event_id) for r in raised.value.refused] == [(1, "blocked")]
        assert "CHECK constraint failed" in raised.value.refused[0].reason
        assert await store.count() == 2
    finally:
        await store.close()


async def test_a_file_from_an_earlier_version_loses_its_product_rows_and_keeps_its_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    earlier = SQLiteInteractionStore(path)
    await earlier.open()
    await earlier.insert_many([event("c1", productId="p-a")])
    await earlier.close()
    with sqlite3.connect(path) as db:
        db.executescript(EARLIER_PRODUCT_ROWS)
    store = SQLiteInteractionStore(path)
    await store.open()
    try:
        await store.insert_many([event("c2", productId="p-b")])
        assert stored_ids(path) == ["c1", "c2"]
        with sqlite3.connect(path) as db:
            leftovers = db.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE 'interaction%product%'"
            ).fetchall()
        assert leftovers == []
    finally:
        await store.close()
