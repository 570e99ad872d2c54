"""Each request's customer, read once: the stored profile (with the customer's consent) and the
recent activity the policy's rules asked for (policy/rules.py `activity()`). The reads of every
request waiting in the same event-loop iteration go to the store together, one `get_profiles` and one
`customers_events_of_types` (the read contact limits use too) for the lot, so a busy server pays a
store round trip per batch, not per request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from finverse_reco.customers import CustomerProfile
from finverse_reco.events import FeedbackEvent
from finverse_reco.policy import Customer, Policy
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)

Read = tuple[CustomerProfile | None, Sequence[FeedbackEvent], bool]  # profile, activity, degraded
# A customer with more of the rules' events than this in the look-back is judged on the newest.
MAX_ACTIVITY = 1000


class CustomerReader:
    def __init__(self, store: InteractionStore, policy: Policy, timeout_seconds: float) -> None:
        self._store = store
        self._policy = policy
        self._timeout = timeout_seconds
        self._waiting: dict[str, list[asyncio.Future[Read]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def customer(
        self, user_id: str, demographics: Mapping[str, str] | None = None
    ) -> tuple[Customer, bool]:
        """The customer as the rules see it, and whether the store failed (then the customer is
        unknown to the rules, which fail closed where configured, and is not personalised: a
        degraded answer is no less safe). With the policy off (a measurement switch, refused in
        production) nothing is read, consent included (docs/ACCOUNTABILITY.md)."""
        if not self._policy.enabled:
            return Customer(user_id=user_id), False
        profile, activity, degraded = await self._read(user_id)
        now = datetime.now(UTC)
        customer = Customer.of(user_id, profile, demographics, activity, now.date())
        if degraded:
            customer.personalise = False  # consent unknown: as if the customer had objected
        return customer, degraded

    def _read(self, user_id: str) -> asyncio.Future[Read]:
        future: asyncio.Future[Read] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        self._waiting.setdefault(user_id, []).append(future)
        return future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.get_running_loop().create_task(self._read_batch(waiting))
        self._tasks.add(task)  # a reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _read_batch(self, waiting: dict[str, list[asyncio.Future[Read]]]) -> None:
        users = list(waiting)
        policy = self._policy
        activity: dict[str, list[FeedbackEvent]] = {}
        try:
            async with asyncio.timeout(self._timeout):
                if policy.activity_types:
                    since = datetime.now(UTC) - policy.activity_lookback
                    profiles, activity = await asyncio.gather(
                        self._store.get_profiles(users),
                        self._store.customers_events_of_types(
                            users, policy.activity_types, since, MAX_ACTIVITY
                        ),
                    )
                else:
                    profiles = await self._store.get_profiles(users)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("store read failed, the policy treats the customers as unknown: %s", exc)
            for futures in waiting.values():
                _answer(futures, (None, (), True))
            return
        except BaseException as exc:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            raise
        for user, futures in waiting.items():
            _answer(futures, (profiles.get(user), activity.get(user, ()), False))


def _answer(futures: list[asyncio.Future[Read]], read: Read) -> None:
    for future in futures:
        if not future.done():  # a request cancelled meanwhile
            future.set_result(read)
