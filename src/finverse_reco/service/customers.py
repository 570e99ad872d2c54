"""Each request's customer, read once: the stored profile (with the customer's consent) and the
recent activity the policy's rules asked for (policy/rules.py `activity()`: applications,
impressions, clicks, dismissals), those of the base rules and of every policy variant a running
experiment serves, so that whichever arm the request is in finds what its rules read. The reads
of every request waiting in the same event-loop iteration go to the store together, one
`get_profiles` and one `customers_events_of_types` for the lot, so a busy server pays a store
round trip per batch, not per request. One batch is read at a time: requests that arrive while
it is in flight wait for the next, so a slow store gets bigger batches, not more reads (a read per
event-loop iteration piled up until every read timed out, measured with three replicas on the
MongoDB stand-in). Each request still waits at most `timeout_seconds` from its arrival."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from finverse_reco.customers import CustomerProfile
from finverse_reco.events import EventType, FeedbackEvent
from finverse_reco.policy import Customer, Policy, activity_windows
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)

Read = tuple[CustomerProfile | None, Sequence[FeedbackEvent], bool]  # profile, activity, degraded
# Per event type: a customer with more events of one type than this in its window is judged on
# the newest. Per type, so that a flood of impressions never hides an application.
MAX_ACTIVITY = 1000
# After a failed read, requests answer degraded at once for this long instead of each waiting out
# the timeout again: during a store outage every list would otherwise take the full timeout.
RETRY_AFTER_SECONDS = 1.0


class CustomerReader:
    def __init__(
        self,
        store: InteractionStore,
        policy: Policy,
        timeout_seconds: float,
        variants: Callable[[], Sequence[Policy]] | None = None,
    ) -> None:
        """`variants`: the policies served besides `policy` now (an experiment's arms), the
        same sequence object until they change."""
        self._store = store
        self._policy = policy
        self._timeout = timeout_seconds
        self._variants = variants
        self._windows = policy.activity_windows
        self._windows_of: Sequence[Policy] = ()  # the variants `_windows` was merged for
        self._waiting: dict[str, list[asyncio.Future[Read]]] = {}
        self._in_flight: asyncio.Task[None] | None = None
        self._retry_at = 0.0  # monotonic

    async def customer(
        self,
        user_id: str,
        demographics: Mapping[str, str] | None = None,
        channel: str | None = None,
    ) -> tuple[Customer, bool]:
        """The customer as the rules see it, for a list shown on `channel`, and whether the store
        failed (then the customer is unknown to the rules, which fail closed where configured, and
        is not personalised: a degraded answer is no less safe; contact limits, which protect from
        repetition and not from harm, then exclude nothing). With the policy off (a measurement
        switch, refused in production) nothing is read, consent included (docs/ACCOUNTABILITY.md)."""
        if not self._policy.enabled:
            return Customer(user_id=user_id, channel=channel), False
        if time.monotonic() < self._retry_at:
            profile, activity, degraded = None, (), True
        else:
            try:
                async with asyncio.timeout(self._timeout):
                    profile, activity, degraded = await self._read(user_id)
            except TimeoutError:  # queued behind a read that did not answer in time
                log.warning("store read too slow, the policy treats the customer as unknown")
                profile, activity, degraded = None, (), True
        today = datetime.now(UTC).date()
        customer = Customer.of(user_id, profile, demographics, activity, today, channel)
        if degraded:
            customer.personalise = False  # consent unknown: as if the customer had objected
        return customer, degraded

    def _read(self, user_id: str) -> asyncio.Future[Read]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Read] = loop.create_future()
        if not self._waiting and self._in_flight is None:
            loop.call_soon(self._flush)
        self._waiting.setdefault(user_id, []).append(future)
        return future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        # Also a reference until it ends (the loop keeps only weak ones).
        self._in_flight = asyncio.get_running_loop().create_task(self._read_batch(waiting))
        self._in_flight.add_done_callback(self._read_done)

    def _read_done(self, _: asyncio.Task[None]) -> None:
        self._in_flight = None
        if self._waiting:
            self._flush()

    async def _read_batch(self, waiting: dict[str, list[asyncio.Future[Read]]]) -> None:
        users = list(waiting)
        windows = self._activity_windows()
        activity: dict[str, list[FeedbackEvent]] = {}
        try:
            async with asyncio.timeout(self._timeout):
                if windows:
                    now = datetime.now(UTC)
                    since = {t.value: now - back for t, back in windows.items()}
                    profiles, activity = await asyncio.gather(
                        self._store.get_profiles(users),
                        self._store.customers_events_of_types(users, since, MAX_ACTIVITY),
                    )
                else:
                    profiles = await self._store.get_profiles(users)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("store read failed, the policy treats the customers as unknown: %s", exc)
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
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

    def _activity_windows(self) -> Mapping[EventType, timedelta]:
        """Per event type, the longest look-back of the base's and the variants' rules (merged
        again only when the variants change)."""
        if self._variants is None:
            return self._windows
        variants = self._variants()
        if variants is not self._windows_of:
            files = [self._policy.rules, *(variant.rules for variant in variants)]
            self._windows, self._windows_of = activity_windows(files), variants
        return self._windows


def _answer(futures: list[asyncio.Future[Read]], read: Read) -> None:
    for future in futures:
        if not future.done():  # a request cancelled meanwhile
            future.set_result(read)
