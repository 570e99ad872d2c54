"""The store contract for feedback on served lists (impressions, dismissals and the reactions online
metrics and contact limits read), on SQLite and MongoDB alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import InteractionStore

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)  # millisecond-aligned, as MongoDB keeps dates


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def event(
    event_id: str, *, kind: str, user: str = "u1", at: datetime = T0, **data: Any
) -> InteractionEvent:
    data.setdefault("productId", "p1")
    raw = {"event_id": event_id, "user_id": user, "type": kind, "timestamp": at.isoformat()}
    return parse_event({**raw, "data": data})


def impression(
    event_id: str, *, user: str = "u1", at: datetime = T0, products=("p1", "p2"), **data: Any
) -> InteractionEvent:
    return parse_event(
        {
            "event_id": event_id,
            "user_id": user,
            "type": "impression",
            "timestamp": at.isoformat(),
            "recommendation_id": f"rec-{event_id}",
            "data": {"productIDs": list(products), "channel": "app_home", **data},
        }
    )


async def test_feedback_fields_round_trip(store: InteractionStore) -> None:
    shown = impression("i1", arm="treatment", modelVersion="v2", strategy="personalized")
    await store.insert_many([shown])

    [stored] = await store.user_interactions("u1")
    assert stored == shown
    assert stored.recommendation_id == "rec-i1"
    assert (stored.data.channel, stored.data.arm, stored.data.modelVersion) == (
        "app_home",
        "treatment",
        "v2",
    )
    assert stored.product_ids() == ["p1", "p2"]


async def test_events_of_types_filters_type_window_and_customer(store: InteractionStore) -> None:
    await store.insert_many(
        [
            impression("i1", at=minutes(0)),
            event("c1", kind="product_click", at=minutes(1)),
            event("v1", kind="product_view", at=minutes(2)),
            event("d1", kind="dismiss", at=minutes(3), productId="p2"),
            impression("i2", user="u2", at=minutes(4)),
            event("c2", kind="product_click", user="u2", at=minutes(10)),
        ]
    )
    wanted = {"impression", "product_click", "dismiss"}

    found = await store.events_of_types(wanted, since=T0)
    assert [e.event_id for e in found] == ["c2", "i2", "d1", "c1", "i1"]  # newest first

    window = await store.events_of_types(wanted, since=minutes(1), until=minutes(10))
    assert [e.event_id for e in window] == ["i2", "d1", "c1"]  # since inclusive, until exclusive

    assert await store.events_of_types({"impression"}, since=minutes(5)) == []
    [shown, _] = await store.events_of_types({"impression"}, since=T0)
    assert (shown.user_id, shown.product_ids, shown.channel) == ("u2", ("p1", "p2"), "app_home")
    assert shown.recommendation_id == "rec-i2" and shown.timestamp == minutes(4).timestamp()
    assert await store.events_of_types(set(), since=T0) == []


async def test_customers_events_per_customer_newest_first_with_a_cap_per_type(
    store: InteractionStore,
) -> None:
    await store.insert_many(
        [
            impression("i1", at=minutes(0)),
            event("c1", kind="product_click", at=minutes(1)),
            event("v1", kind="product_view", at=minutes(2)),  # not asked for
            event("d1", kind="dismiss", at=minutes(3), productId="p2"),
            impression("i2", user="u2", at=minutes(4)),
            impression("i3", user="u3", at=minutes(-5)),  # before `since`
            impression("i4", at=minutes(5)),
            impression("i5", at=minutes(6)),
        ]
    )
    wanted = dict.fromkeys(["impression", "product_click", "dismiss"], T0)

    found = await store.customers_events_of_types(["u1", "u2", "u3", "u4"], wanted, 10)
    assert {user: [e.event_id for e in events] for user, events in found.items()} == {
        "u1": ["i5", "i4", "d1", "c1", "i1"],
        "u2": ["i2"],
    }
    # The cap is per type: the newest two impressions, and the click and dismissal all the same.
    capped = await store.customers_events_of_types(["u1"], wanted, 2)
    assert [e.event_id for e in capped["u1"]] == ["i5", "i4", "d1", "c1"]
    assert await store.customers_events_of_types([], wanted, 2) == {}
    assert await store.customers_events_of_types(["u1"], {}, 2) == {}
    with pytest.raises(ValueError):
        await store.customers_events_of_types(["u1"], wanted, 0)


async def test_each_type_is_read_within_its_own_window(store: InteractionStore) -> None:
    """An application a year back is still found while impressions count a week: many
    impressions never hide an application (the policy reads both in one call)."""
    await store.insert_many(
        [
            event("a1", kind="application_submit", at=minutes(0)),
            *(impression(f"i{n}", at=minutes(10 + n)) for n in range(6)),
            event("c1", kind="product_click", at=minutes(11)),
        ]
    )
    windows = {
        "application_submit": T0,
        "impression": minutes(13),
        "product_click": minutes(12),
    }
    found = await store.customers_events_of_types(["u1"], windows, 2)
    assert [e.event_id for e in found["u1"]] == ["i5", "i4", "a1"]
