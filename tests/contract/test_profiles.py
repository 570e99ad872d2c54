"""The customer-profile part of the store contract (`put_profile`, `get_profile`, `get_profiles`)
and `user_activity`, run against SQLite and the MongoDB stand-in alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from finverse_reco.customers import CustomerProfile, KycStatus
from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import InteractionStore

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def profile(user_id: str = "u1", *, at: datetime = T0, **fields: object) -> CustomerProfile:
    return CustomerProfile.model_validate({"user_id": user_id, "updated_at": at, **fields})


def event(
    event_id: str, *, user: str, kind: str, at: datetime = T0, **data: str
) -> InteractionEvent:
    raw = {"event_id": event_id, "user_id": user, "type": kind, "timestamp": at.isoformat()}
    return parse_event({**raw, "data": {"productId": "p0", **data}})


FULL = profile(
    birth_year=1988,
    annual_income=64_500.5,
    income_range="50k-75k",
    residency="GB",
    region="london",
    risk_profile=3,
    kyc_status="verified",
    holdings=["p1", "p2"],
    personalisation_consent=False,
)


async def test_a_profile_round_trips_with_every_field(store: InteractionStore) -> None:
    assert await store.put_profile(FULL)
    got = await store.get_profile("u1")
    assert got == FULL
    assert got.kyc_status is KycStatus.VERIFIED
    assert got.personalisation_consent is False  # a bool, not 0
    assert got.updated_at == T0 and got.updated_at.tzinfo is not None


async def test_unknown_customers_have_no_profile(store: InteractionStore) -> None:
    assert await store.get_profile("nobody") is None
    assert await store.get_profiles([]) == {}
    await store.put_profile(profile("u1"))
    assert await store.get_profiles(["nobody", "u1"]) == {"u1": profile("u1")}


async def test_get_profiles_reads_several_at_once(store: InteractionStore) -> None:
    for n in range(30):
        await store.put_profile(profile(f"u{n}", risk_profile=1 + n % 5))
    wanted = [f"u{n}" for n in range(0, 30, 3)] + ["u3", "missing"]
    found = await store.get_profiles(wanted)
    assert sorted(found) == sorted({f"u{n}" for n in range(0, 30, 3)})
    assert all(found[user].risk_profile == 1 + int(user[1:]) % 5 for user in found)


async def test_a_newer_profile_replaces_the_whole_profile(store: InteractionStore) -> None:
    await store.put_profile(FULL)
    newer = profile(at=T0 + timedelta(minutes=1), risk_profile=1)
    assert await store.put_profile(newer)
    got = await store.get_profile("u1")
    assert got == newer and got.holdings == () and got.residency is None


async def test_an_older_copy_changes_nothing(store: InteractionStore) -> None:
    await store.put_profile(FULL)
    assert not await store.put_profile(profile(at=T0 - timedelta(seconds=1), risk_profile=5))
    assert await store.get_profile("u1") == FULL


async def test_profiles_survive_reopening(new_store: Callable[[], InteractionStore]) -> None:
    first = new_store()
    await first.open()
    await first.put_profile(FULL)
    await first.close()
    second = new_store()
    await second.open()
    try:
        assert await second.get_profile("u1") == FULL
    finally:
        await second.close()


async def test_user_activity_filters_users_types_and_time(store: InteractionStore) -> None:
    await store.insert_many(
        [
            event("a", user="u1", kind="application_submit", productId="p1"),
            event("b", user="u1", kind="product_view", productId="p2"),
            event("c", user="u2", kind="application_submit", productId="p3"),
            event("d", user="u3", kind="application_submit", productId="p4"),
            event("old", user="u1", kind="application_submit", at=T0 - timedelta(days=2)),
        ]
    )
    columns = await store.user_activity(["u1", "u2"], ["application_submit"], T0 - timedelta(1))
    found = sorted(zip(columns.user_ids, columns.product_ids, strict=True))
    assert found == [("u1", "p1"), ("u2", "p3")]
    assert set(columns.timestamps.tolist()) == {T0.timestamp()}
    assert len(await store.user_activity([], ["application_submit"], T0)) == 0
    assert len(await store.user_activity(["u1"], [], T0)) == 0
