"""The customer-profile part of the store contract (`put_profile`, `get_profile`, `get_profiles`,
`put_consent`, `customers_without_consent`) run against SQLite and the MongoDB stand-in alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from finverse_reco.customers import CustomerProfile, KycStatus
from finverse_reco.store import InteractionStore

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def profile(user_id: str = "u1", *, at: datetime = T0, **fields: object) -> CustomerProfile:
    return CustomerProfile.model_validate({"user_id": user_id, "updated_at": at, **fields})


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
    newer = profile(at=T0 + timedelta(minutes=1), risk_profile=1, personalisation_consent=True)
    assert await store.put_profile(newer)
    got = await store.get_profile("u1")
    assert got == newer and got.holdings == () and got.residency is None


async def test_a_profile_silent_on_consent_keeps_the_stored_answer(store: InteractionStore) -> None:
    """A profile feed that knows nothing of consent must not undo an objection."""
    await store.put_profile(FULL)  # objected
    newer = profile(at=T0 + timedelta(minutes=1), risk_profile=1)
    assert newer.personalisation_consent is None
    assert await store.put_profile(newer)
    got = await store.get_profile("u1")
    assert got == newer.model_copy(update={"personalisation_consent": False})
    assert got.holdings == () and got.residency is None  # the rest replaced whole
    await store.put_profile(profile("u2"))
    assert (await store.get_profile("u2")).personalisation_consent is None


async def test_consent_is_set_alone_and_the_rest_is_kept(store: InteractionStore) -> None:
    await store.put_profile(FULL.model_copy(update={"personalisation_consent": None}))
    later = T0 + timedelta(minutes=5)
    assert await store.put_consent("u1", False, later)
    got = await store.get_profile("u1")
    assert got == FULL.model_copy(update={"updated_at": later})
    assert got.personalisation_consent is False
    assert await store.put_consent("u1", True, later)  # the same time again: taken, as profiles
    assert (await store.get_profile("u1")).personalisation_consent is True


async def test_consent_for_a_customer_without_profile_makes_one(store: InteractionStore) -> None:
    assert await store.put_consent("fresh", False, T0)
    assert await store.get_profile("fresh") == profile("fresh", personalisation_consent=False)


async def test_an_older_consent_changes_nothing(store: InteractionStore) -> None:
    await store.put_profile(FULL.model_copy(update={"personalisation_consent": True}))
    assert not await store.put_consent("u1", False, T0 - timedelta(seconds=1))
    assert (await store.get_profile("u1")).personalisation_consent is True
    # and a profile older than a consent change is refused like any older profile
    assert await store.put_consent("u1", False, T0 + timedelta(minutes=1))
    assert not await store.put_profile(profile(at=T0, personalisation_consent=True))
    assert (await store.get_profile("u1")).personalisation_consent is False


async def test_the_customers_without_consent_are_listed(store: InteractionStore) -> None:
    assert await store.customers_without_consent() == set()
    await store.put_profile(profile("asked_yes", personalisation_consent=True))
    await store.put_profile(profile("never_asked"))
    await store.put_profile(profile("objected", personalisation_consent=False))
    await store.put_consent("objected_later", False, T0)
    await store.put_consent("changed_mind", False, T0)
    await store.put_consent("changed_mind", True, T0 + timedelta(seconds=1))
    assert await store.customers_without_consent() == {"objected", "objected_later"}


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
