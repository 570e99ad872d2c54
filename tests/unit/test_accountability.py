"""The pure parts of trusted writes and erasure: the write entry points' time rules, tombstones,
and leaving customers' rows out of the training scan's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from finverse_reco.erasure import ErasedCustomers
from finverse_reco.events import EventRules, InteractionColumns, InvalidEvent, parse_event

RULES = EventRules(earliest=datetime(2010, 1, 1, tzinfo=UTC), max_future=timedelta(minutes=5))


def view(user: str = "u-1", timestamp: str = "2026-01-01T12:00:00Z", **data) -> dict:
    return {
        "user_id": user,
        "type": "product_view",
        "timestamp": timestamp,
        "data": {"productId": "p-1", **data},
    }


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("2026-01-01T12:00:00", "time zone"),
        ("2009-12-31T23:59:59Z", "before 2010"),
        ("0001-01-01T00:00:00Z", "before 2010"),
        ("six minutes ahead", "300 s in the future"),
    ],
)
def test_the_rules_refuse_a_timestamp_outside_the_window(timestamp, reason):
    if timestamp == "six minutes ahead":  # taken when the test runs, not when it is collected
        timestamp = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(view(timestamp=timestamp), RULES)


def test_the_rules_accept_the_window_and_history_is_read_without_them():
    edge = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    assert parse_event(view(timestamp=edge), RULES).timestamp.tzinfo is not None
    assert parse_event(view(timestamp="2010-01-01T00:00:00+00:00"), RULES)
    # Stored history (seeding, evaluation datasets): naive is UTC, old is fine.
    old = parse_event(view(timestamp="1998-03-01T10:00:00"))
    assert old.timestamp == datetime(1998, 3, 1, 10, tzinfo=UTC)


def test_a_tombstone_is_a_keyed_hash_not_the_id():
    erased = ErasedCustomers("one-key-of-sixteen")
    other_key = ErasedCustomers("another-key-of-16")
    tombstone = erased.tombstone("user_42")
    assert len(tombstone) == 64 and "user_42" not in tombstone
    assert tombstone == erased.tombstone("user_42") != other_key.tombstone("user_42")
    assert not erased.is_erased("user_42")
    erased.add(tombstone)
    assert erased.is_erased("user_42") and not erased.is_erased("user_43")
    assert erased.erased_among(["user_41", "user_42", "user_42"]) == {"user_42"}
    erased.replace([])
    assert not erased.is_erased("user_42") and len(erased) == 0


def test_columns_without_some_customers_keep_every_other_row_whole():
    events = [
        parse_event(view("a", viewDuration=10.0)),
        parse_event(view("gone", viewDuration=20.0)),
        parse_event({**view("b"), "type": "search", "data": {"query": "cards"}}),
        parse_event(view("gone", timestamp="2026-01-02T00:00:00Z")),
    ]
    columns = InteractionColumns.from_events(events)
    kept = columns.without_users({"gone"})
    assert kept.user_ids == ["a", "b"]
    assert kept.types == ["product_view", "search"]
    assert kept.queries == [None, "cards"]
    np.testing.assert_array_equal(kept.timestamps, columns.timestamps[[0, 2]])
    np.testing.assert_array_equal(kept.view_durations, columns.view_durations[[0, 2]])
    assert columns.without_users(set()) is columns
    assert len(columns.without_users({"a", "b", "gone"})) == 0
