"""The audit trail's and erasure's part of the store contract, on SQLite and the MongoDB stand-in
alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from finverse_reco.audit import AuditRecord
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import InteractionEvent, parse_event
from finverse_reco.store import InteractionStore

# Millisecond-aligned: MongoDB keeps dates to the millisecond.
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def record(
    user: str | None = "u1",
    *,
    at: datetime = T0,
    session: str | None = None,
    scored: bool = True,
    degraded: bool = False,
) -> AuditRecord:
    return AuditRecord(
        recommendation_id=uuid4().hex,
        served_at=at,
        user_id=user,
        session_id=session,
        product_id=None,
        model_version="20261101T000000Z-abc123",
        policy_version="rules-3",
        strategy="personalized" if scored else "popular",
        degraded=degraded,
        product_ids=("prod_0003", "prod_0001", "prod_0002"),
        scores=(0.5, 0.25, 0.125) if scored else None,
        reasons=("matches your activity",) * 3 if scored else None,
    )


async def test_a_record_reads_back_whole(store: InteractionStore) -> None:
    written = [record(), record(None, session="sess_1", scored=False, degraded=True)]
    assert await store.append_audit(written) == 2
    for expected in written:
        assert await store.audit_record(expected.recommendation_id) == expected
    assert await store.audit_record(uuid4().hex) is None


async def test_appending_a_batch_again_stores_nothing_twice(store: InteractionStore) -> None:
    batch = [record() for _ in range(20)]
    assert await store.append_audit(batch[:12]) == 12
    assert await store.append_audit(batch) == 8
    assert await store.count_audit() == 20


async def test_a_customers_records_newest_first_since_a_time(store: InteractionStore) -> None:
    mine = [record("u1", at=T0 + timedelta(minutes=n)) for n in range(5)]
    others = [record("u2"), record(None, session="u1")]
    await store.append_audit([*mine, *others])
    newest_first = [r.recommendation_id for r in reversed(mine)]
    assert [r.recommendation_id for r in await store.customer_audit("u1")] == newest_first
    since = await store.customer_audit("u1", since=T0 + timedelta(minutes=3))
    assert [r.recommendation_id for r in since] == newest_first[:2]
    assert len(await store.customer_audit("u1", limit=2)) == 2
    assert await store.customer_audit("nobody") == []


async def test_the_retention_purge_deletes_only_older_records(store: InteractionStore) -> None:
    old = [record(at=T0 - timedelta(days=400 + n)) for n in range(3)]
    recent = [record(at=T0 - timedelta(days=n)) for n in range(4)]
    await store.append_audit([*old, *recent])
    assert await store.purge_audit(T0 - timedelta(days=365)) == 3
    assert await store.count_audit() == 4
    for kept in recent:
        assert await store.audit_record(kept.recommendation_id) == kept


# --- erasure ------------------------------------------------------------------------------------


async def test_deleting_a_customer_removes_their_interactions_audit_records_and_profile_only(
    store: InteractionStore,
) -> None:
    def view(event_id: str, user: str) -> InteractionEvent:
        return parse_event(
            {
                "event_id": event_id,
                "user_id": user,
                "session_id": f"s-{user}",
                "type": "product_view",
                "timestamp": T0.isoformat(),
                "data": {"productId": "prod_0001"},
            }
        )

    await store.insert_many(
        [view(f"gone-{n}", "gone") for n in range(4)] + [view("kept-1", "kept")]
    )
    await store.append_audit([record("gone"), record("gone"), record("kept")])
    for user in ("gone", "kept"):
        await store.put_profile(CustomerProfile(user_id=user, risk_profile=2, updated_at=T0))

    deleted = await store.delete_customer("gone")

    assert deleted == {"interactions": 4, "audit_records": 2, "profiles": 1}
    assert await store.get_profile("gone") is None
    assert (await store.get_profile("kept")).risk_profile == 2
    assert await store.user_interactions("gone") == []
    assert await store.session_interactions("s-gone") == []
    assert await store.customer_audit("gone") == []
    assert [e.event_id for e in await store.user_interactions("kept")] == ["kept-1"]
    assert len(await store.customer_audit("kept")) == 1
    nothing_left = {"interactions": 0, "audit_records": 0, "profiles": 0}
    assert await store.delete_customer("gone") == nothing_left


async def test_tombstones_are_kept_once_and_found_in_a_batch(store: InteractionStore) -> None:
    assert await store.tombstones() == set()
    assert await store.add_tombstone("a" * 64, T0) is True
    assert await store.add_tombstone("a" * 64, T0 + timedelta(days=1)) is False
    assert await store.add_tombstone("b" * 64, T0) is True
    assert await store.tombstones() == {"a" * 64, "b" * 64}
    assert await store.erased_among(["c" * 64, "a" * 64, "a" * 64]) == {"a" * 64}
    assert await store.erased_among([]) == set()
