"""The demo world's shape: sizes, ids, event schema, sessions and the event funnel."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest

from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.demo import DEFAULT_END, DemoWorld, generate_world, write_world
from finverse_reco.events import ID_RE, EventType, parse_event

TARGET_MIX = {
    "product_view": 0.55,
    "product_click": 0.15,
    "search": 0.10,
    "comparison": 0.08,
    "favorite": 0.05,
    "application_start": 0.04,
    "application_submit": 0.03,
}
PRODUCT_FIELDS = (
    "interest_rate",
    "annual_fee",
    "risk_level",
    "term_months",
    "min_age",
    "min_income",
)


def test_catalog_is_large_and_varied(world: DemoWorld) -> None:
    assert len(world.products) >= 200
    assert len({p.category for p in world.products}) >= 8
    assert len({p.institution for p in world.products}) >= 10
    assert len({p.name for p in world.products}) == len(world.products)
    for field in PRODUCT_FIELDS:
        known = [getattr(p, field) for p in world.products if getattr(p, field) is not None]
        assert len(set(known)) > 1, f"{field} never varies"
    for p in world.products:
        assert p.name.split()[0] in p.institution, p
        assert 1 <= p.risk_level <= 5


def test_ids_follow_the_documented_patterns(world: DemoWorld) -> None:
    assert [p.id for p in world.products] == [f"prod_{n:04d}" for n in range(1, 241)]
    assert [u.id for u in world.users] == [f"user_{n:05d}" for n in range(1, 2001)]
    event_ids = [e["event_id"] for e in world.events]
    assert len(set(event_ids)) == len(event_ids)
    for event in world.events:
        assert re.fullmatch(r"sess_user_\d{5}_\d{3,}", event["session_id"]), event
        assert event["session_id"].startswith(f"sess_{event['user_id']}_")
        assert ID_RE.fullmatch(event["event_id"]) and ID_RE.fullmatch(event["session_id"])


def test_enough_users_and_events_of_every_type(world: DemoWorld) -> None:
    assert len(world.users) >= 2000
    assert len(world.events) >= 100_000
    share = Counter(e["type"] for e in world.events)
    # The world browses; it is shown no served lists, so it has no impressions or dismissals of
    # its own (`evaluate --dismissals` adds dismissals by a rule).
    feedback = {EventType.IMPRESSION.value, EventType.DISMISS.value}
    assert set(share) == {t.value for t in EventType} - feedback
    for kind, target in TARGET_MIX.items():
        assert share[kind] / len(world.events) == pytest.approx(target, abs=0.015), kind


def test_every_event_passes_the_service_validator(world: DemoWorld) -> None:
    products = {p.id: p for p in world.products}
    users = {u.id: u for u in world.users}
    for raw in world.events:
        event = parse_event(raw)
        user = users[event.user_id]
        demographics = event.data.userDemographics
        assert (demographics.age_group, demographics.income_range, demographics.location) == (
            user.age_group,
            user.income_range,
            user.location,
        )
        assert all(pid in products for pid in event.product_ids())
        if event.data.productId:
            product = products[event.data.productId]
            assert (event.data.category, event.data.institution) == (
                product.category,
                product.institution,
            )


def test_event_payloads_have_the_seed_shape(world: DemoWorld) -> None:
    products = {p.id: p for p in world.products}
    for event in world.events:
        data = event["data"]
        if event["type"] == "search":
            assert data["query"] and data["category"] and "productId" not in data
        elif event["type"] == "comparison":
            compared = data["productIDs"]
            assert 2 <= len(compared) <= 4 and len(set(compared)) == len(compared)
            assert {products[p].category for p in compared} == {data["category"]}
        else:
            assert data["productId"] in products
        assert ("viewDuration" in data) == (event["type"] == "product_view")


def test_events_are_in_time_order_inside_the_window(world: DemoWorld) -> None:
    stamps = [e["timestamp"] for e in world.events]
    assert all(s.endswith("Z") for s in stamps)
    instants = [datetime.fromisoformat(s) for s in stamps]
    assert instants == sorted(instants)
    assert DEFAULT_END - timedelta(days=90) <= instants[0] and instants[-1] < DEFAULT_END


def test_sessions_are_short_bursts_of_one_user(world: DemoWorld) -> None:
    sessions: dict[str, list[dict]] = defaultdict(list)
    for event in world.events:
        sessions[event["session_id"]].append(event)
    for session_id, events in sessions.items():
        assert 3 <= len(events) <= 15, session_id
        assert len({e["user_id"] for e in events}) == 1
        span = datetime.fromisoformat(events[-1]["timestamp"]) - datetime.fromisoformat(
            events[0]["timestamp"]
        )
        assert span < timedelta(minutes=30), session_id


def test_activity_is_heavy_tailed_with_a_floor(world: DemoWorld) -> None:
    per_user = Counter(e["user_id"] for e in world.events)
    assert set(per_user) == {u.id for u in world.users}
    counts = sorted(per_user.values(), reverse=True)
    assert counts[-1] >= 5
    busiest_tenth = counts[: len(counts) // 10]
    assert sum(busiest_tenth) > 0.2 * sum(counts)  # a flat spread would give them 0.1


def test_submits_follow_a_start_of_the_same_product(world: DemoWorld) -> None:
    started: set[tuple[str, str]] = set()
    submits = 0
    for event in world.events:
        key = (event["user_id"], event["data"].get("productId"))
        if event["type"] == "application_start":
            started.add(key)
        elif event["type"] == "application_submit":
            submits += 1
            assert key in started, event
    assert submits > 0


def test_write_world_writes_a_readable_catalog(world: DemoWorld, tmp_path) -> None:
    path = tmp_path / "data" / "catalog.json"
    write_world(world, path)
    assert read_catalog_file(path) == world.products


def test_small_worlds_keep_every_rule() -> None:
    small = generate_world(7, n_users=40, n_products=20, n_events=400, days=3)
    assert (len(small.users), len(small.products), len(small.events)) == (40, 20, 400)
    assert len({p.category for p in small.products}) == 10
    for raw in small.events:
        event = parse_event(raw)
        assert event.product_ids() or event.type is EventType.SEARCH


def test_end_in_another_timezone_is_respected() -> None:
    end = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    small = generate_world(3, n_users=20, n_products=20, n_events=200, end=end, days=2)
    instants = [datetime.fromisoformat(e["timestamp"]) for e in small.events]
    assert end - timedelta(days=2) <= min(instants) and max(instants) < end
    assert max(instants).tzinfo == UTC


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seed": -1}, "seed"),
        ({"n_users": 0}, "n_users"),
        ({"n_products": 19}, "n_products"),
        ({"n_users": 100, "n_events": 499}, "n_events"),
        ({"end": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"days": 0}, "days"),
        ({"n_users": 1, "n_events": 5000, "days": 1}, "window"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_world(**{"n_users": 50, "n_products": 20, "n_events": 500, **arguments})
