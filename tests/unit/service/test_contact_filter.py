"""The contact filter: requests that arrive together share one store read; a store that fails or
hangs leaves the list unfiltered and degraded, never failed."""

import asyncio
from datetime import UTC, datetime, timedelta

from finverse_reco.events import parse_event
from finverse_reco.service.contact_limits import ContactFilter, ContactRules
from finverse_reco.store import StoreUnavailable, open_store

NOW = datetime.now(UTC)


class CountingStore:
    def __init__(self, store, fail: Exception | None = None, delay: float = 0.0):
        self.store, self.fail, self.delay, self.reads = store, fail, delay, []

    async def customers_events_of_types(self, user_ids, types, since, limit):
        self.reads.append(sorted(user_ids))
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return await self.store.customers_events_of_types(user_ids, types, since, limit)


def dismissal(user: str, product: str):
    at = (NOW - timedelta(hours=1)).isoformat()
    raw = {"user_id": user, "type": "dismiss", "timestamp": at, "data": {"productId": product}}
    return parse_event(raw)


async def exclusions(contact: ContactFilter, user: str):
    rows = {"p1": 1, "p2": 2}
    return await contact.exclusions(user, NOW, rows.get, lambda product: None)


async def test_concurrent_requests_share_one_read_and_each_gets_its_own_answer(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    await store.open()
    await store.insert_many([dismissal("u1", "p1"), dismissal("u2", "p2")])
    counting = CountingStore(store)
    contact = ContactFilter(counting, ContactRules(), timeout_seconds=5)

    answers = await asyncio.gather(*(exclusions(contact, f"u{n % 4}") for n in range(12)))

    assert counting.reads == [["u0", "u1", "u2", "u3"]]
    assert [a.rows.tolist() if a.rows is not None else [] for a in answers[:4]] == [
        [],
        [1],
        [2],
        [],
    ]
    assert (await exclusions(contact, "u1")).counts == {"dismissed": 1}
    assert len(counting.reads) == 2  # a later request: a read of its own
    await store.close()


async def test_a_failing_or_slow_store_degrades_the_list_instead_of_failing_it(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/i.db")
    failing = ContactFilter(CountingStore(store, StoreUnavailable("down")), ContactRules(), 5)
    answer = await exclusions(failing, "u1")
    assert answer.degraded and answer.rows is None

    slow_store = CountingStore(store, delay=1.0)
    slow = ContactFilter(slow_store, ContactRules(), timeout_seconds=0.05)
    answer = await exclusions(slow, "u1")
    assert answer.degraded and answer.rows is None
    # Right after a failure the next requests do not wait out the timeout again.
    started = asyncio.get_running_loop().time()
    assert (await exclusions(slow, "u2")).degraded
    assert asyncio.get_running_loop().time() - started < 0.05 and len(slow_store.reads) == 1
