"""Each request's customer read: requests that arrive together share one store read, and while a
read is in flight the requests that arrive wait for the next one, so a slow store gets bigger
batches instead of more reads; no request waits longer than the timeout, and for a second after a
failed read none waits at all."""

import asyncio
from datetime import UTC, datetime, timedelta

from finverse_reco.events import parse_event
from finverse_reco.policy import Policy, RulesFile
from finverse_reco.service.customers import CustomerReader
from finverse_reco.store import open_store

NOW = datetime.now(UTC)
APPLIED = RulesFile.model_validate({"version": "t", "rules": [{"kind": "applied"}]})


class SlowStore:
    """The real SQLite store behind a delay, recording each read's customers."""

    def __init__(self, store, delay: float) -> None:
        self.store, self.delay, self.reads = store, delay, []

    async def get_profiles(self, user_ids):
        await asyncio.sleep(self.delay)
        return await self.store.get_profiles(user_ids)

    async def customers_events_of_types(self, user_ids, since, limit):
        self.reads.append(sorted(user_ids))
        await asyncio.sleep(self.delay)
        return await self.store.customers_events_of_types(user_ids, since, limit)


def application(user: str, product: str):
    at = (NOW - timedelta(days=1)).isoformat()
    raw = {"user_id": user, "type": "application_submit", "timestamp": at}
    return parse_event(raw | {"data": {"productId": product}})


async def test_requests_arriving_during_a_read_share_the_next_one(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    await store.open()
    await store.insert_many([application("u1", "p1"), application("u5", "p5")])
    slow = SlowStore(store, delay=0.2)
    reader = CustomerReader(slow, Policy(APPLIED), timeout_seconds=5)

    first = asyncio.ensure_future(reader.customer("u0"))
    await asyncio.sleep(0.05)  # the first read is in flight
    later = []
    for n in range(1, 8):  # one by one, each in an event-loop iteration of its own
        later.append(asyncio.ensure_future(reader.customer(f"u{n}")))
        await asyncio.sleep(0.01)
    answers = await asyncio.gather(first, *later)

    assert slow.reads == [["u0"], [f"u{n}" for n in range(1, 8)]]
    applied = {c.user_id: [p for e in c.activity for p in e.product_ids] for c, _ in answers}
    assert applied["u1"] == ["p1"] and applied["u5"] == ["p5"] and applied["u2"] == []
    assert not any(degraded for _, degraded in answers)
    await store.close()


async def test_a_request_queued_behind_a_hung_read_is_answered_within_its_timeout(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    await store.open()
    reader = CustomerReader(SlowStore(store, delay=30), Policy(APPLIED), timeout_seconds=0.3)

    first = asyncio.ensure_future(reader.customer("u0"))
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    queued, degraded = await reader.customer("u1")
    waited = asyncio.get_running_loop().time() - started

    assert degraded and queued.user_id == "u1" and queued.activity == ()
    assert not queued.personalise  # consent unknown: served as if the customer had objected
    assert waited < 1.0  # its own timeout, not the hung read's 30 s plus another read
    assert (await first)[1]  # the hung read itself timed out: degraded, not failed
    await store.close()


async def test_after_a_failed_read_requests_answer_degraded_without_waiting(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    await store.open()
    slow = SlowStore(store, delay=30)
    reader = CustomerReader(slow, Policy(APPLIED), timeout_seconds=0.2)
    assert (await reader.customer("u0"))[1]  # timed out: degraded
    await asyncio.sleep(0.1)  # the batch's own timeout ends the read just after

    started = asyncio.get_running_loop().time()
    customer, degraded = await reader.customer("u1", channel="email")
    assert degraded and customer.channel == "email" and customer.activity == ()
    assert asyncio.get_running_loop().time() - started < 0.05  # no second wait
    assert slow.reads == [["u0"]]
    await store.close()


async def test_the_read_brings_what_the_base_and_every_variant_in_use_need(tmp_path):
    """A variant's contact limit over 14 days needs impressions the base (applications only)
    never asks for: they are read while the variant is served, and no longer once it is not."""
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    await store.open()
    shown = (NOW - timedelta(days=10)).isoformat()
    impression = {"user_id": "u1", "type": "impression", "timestamp": shown}
    impression |= {"recommendation_id": "r1", "data": {"productIDs": ["p2"], "channel": "app"}}
    await store.insert_many([application("u1", "p1"), parse_event(impression)])
    slow = SlowStore(store, delay=0)
    longer = RulesFile.model_validate(
        {"version": "v", "rules": [{"kind": "contact_limit", "max_impressions": 2, "days": 14}]}
    )
    in_use: list[tuple[Policy, ...]] = [(Policy(longer),)]
    reader = CustomerReader(slow, Policy(APPLIED), timeout_seconds=5, variants=lambda: in_use[0])

    customer, _ = await reader.customer("u1")
    assert sorted(e.type for e in customer.activity) == ["application_submit", "impression"]
    in_use[0] = ()  # the experiment stopped
    customer, _ = await reader.customer("u1")
    assert [e.type for e in customer.activity] == ["application_submit"]
    await store.close()
