"""Contact limits and dismissals: products a customer must not be shown now, from their feedback.

- A **contact limit** — "not shown after 3 impressions in 7 days without a click" — counts a
  customer's impressions of a product in the last `days`, after their latest click on it (a click
  starts the count again). At `max_impressions` the product is excluded. A limit may be scoped to a
  `channel` (only impressions on that channel count, and it applies to lists requested for that
  channel) and to a `category` (it applies to products of that category only).
- A **dismissed** product is excluded for `dismiss_days` after the customer dismissed it.

`excluded_products` is pure (events in, product ids and the rule that excluded each out);
`ContactFilter` reads a customer's recent feedback from the store (`customers_events_of_types`,
indexed on customer and time, one read for the requests that arrive together) and turns the
answer into the `exclude` rows of the one top-k kernel,
so every path fills its list from the products still allowed. Until the policy rules file exists,
the rules come from settings (`FINVERSE_CONTACT_LIMITS`, `FINVERSE_DISMISS_DAYS`); see
docs/FEEDBACK.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from finverse_reco.events import EventType, FeedbackEvent
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)
IMPRESSION, CLICK, DISMISS = (
    EventType.IMPRESSION.value,
    EventType.PRODUCT_CLICK.value,
    EventType.DISMISS.value,
)
CONTACT_TYPES = frozenset({IMPRESSION, CLICK, DISMISS})
CONTACT_LIMIT = "contact_limit"
DISMISSED = "dismissed"
# A customer with more feedback than this in the longest window is judged on the newest.
MAX_EVENTS = 1000
RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ContactLimit:
    max_impressions: int = 3
    days: float = 7.0
    channel: str | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        if self.max_impressions < 1 or self.days <= 0:
            raise ValueError("a contact limit needs max_impressions >= 1 and days > 0")


@dataclass(frozen=True, slots=True)
class ContactRules:
    limits: tuple[ContactLimit, ...] = (ContactLimit(),)
    dismiss_days: float = 30.0

    def __post_init__(self) -> None:
        if self.dismiss_days < 0:
            raise ValueError("dismiss_days must be >= 0")

    @property
    def lookback(self) -> timedelta:
        return timedelta(days=max([self.dismiss_days, *(limit.days for limit in self.limits)]))

    @property
    def active(self) -> bool:
        return bool(self.limits) or self.dismiss_days > 0


def excluded_products(
    events: Iterable[FeedbackEvent],
    now: datetime,
    rules: ContactRules,
    *,
    channel: str | None = None,
    category_of: Callable[[str], str | None] = lambda product: None,
) -> dict[str, str]:
    """Product id → the rule that excludes it (`contact_limit` or `dismissed`), for one customer's
    feedback events and a list requested for `channel` (None: no channel named)."""
    impressions: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    last_click: dict[str, float] = {}
    excluded: dict[str, str] = {}
    now_ts = now.timestamp()
    dismiss_since = now_ts - rules.dismiss_days * 86_400
    for event in events:
        at = event.timestamp
        if event.type == IMPRESSION:
            for product in event.product_ids:
                impressions[product].append((at, event.channel))
        elif not event.product_ids:
            continue
        elif event.type == CLICK:
            product = event.product_ids[0]
            last_click[product] = max(last_click.get(product, at), at)
        elif event.type == DISMISS and at >= dismiss_since and rules.dismiss_days > 0:
            excluded[event.product_ids[0]] = DISMISSED
    for limit in rules.limits:
        if limit.channel is not None and limit.channel != channel:
            continue
        since = now_ts - limit.days * 86_400
        for product, shown in impressions.items():
            if product in excluded:
                continue
            if limit.category is not None and category_of(product) != limit.category:
                continue
            after = max(since, last_click.get(product, since))
            count = 0
            for at, on in shown:
                if after < at <= now_ts and (limit.channel is None or on == limit.channel):
                    count += 1
            if count >= limit.max_impressions:
                excluded[product] = CONTACT_LIMIT
    return excluded


@dataclass(slots=True)
class Exclusions:
    """What the contact rules take out of one list: item rows for the kernel's `exclude`, and how
    many products each rule excluded (for `explain`)."""

    rows: np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)
    degraded: bool = False  # the store could not say: nothing was excluded


class ContactFilter:
    """Each request's exclusions from its customer's recent feedback. The requests that arrive
    together share one store read (`customers_events_of_types`: one trip to SQLite's reader thread
    or one MongoDB find), as ranking shares one matrix product (`batching.py`): a read per request
    cost a fifth of the user endpoint's throughput (bench/serving.py --feedback)."""

    def __init__(self, store: InteractionStore, rules: ContactRules, timeout_seconds: float):
        self._store = store
        self.rules = rules
        self._timeout = timeout_seconds
        # After a failed read, requests do not wait out the timeout again until this (monotonic)
        # time: during a store outage every list would otherwise take the full timeout.
        self._retry_at = 0.0
        self._waiting: dict[str, list[asyncio.Future[list[FeedbackEvent]]]] = {}
        self._since: datetime | None = None
        self._reads: set[asyncio.Task[None]] = set()  # running reads, kept from the collector

    async def exclusions(
        self,
        customer_id: str,
        now: datetime,
        item_row: Callable[[str], int | None],
        category_of: Callable[[str], str | None],
        *,
        channel: str | None = None,
    ) -> Exclusions:
        if not self.rules.active:
            return Exclusions()
        if time.monotonic() < self._retry_at:
            return Exclusions(degraded=True)
        try:
            async with asyncio.timeout(self._timeout):
                events = await self._history(customer_id, now - self.rules.lookback)
        except (StoreUnavailable, TimeoutError) as exc:
            # Contact limits protect the customer from repetition, not from harm: a list without
            # them beats no list. The answer says it is degraded.
            log.warning("contact limits not applied, the store did not answer: %s", exc)
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            return Exclusions(degraded=True)
        excluded = excluded_products(
            events, now, self.rules, channel=channel, category_of=category_of
        )
        return Exclusions(_rows(excluded, item_row), dict(Counter(excluded.values())))

    def _history(self, customer_id: str, since: datetime) -> asyncio.Future[list[FeedbackEvent]]:
        """The customer's feedback since `since`, read with every other request's of this loop
        iteration (the batch reads from the earliest `since`: the rules count by their own days)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[FeedbackEvent]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._read_batch)
        self._waiting.setdefault(customer_id, []).append(answer)
        self._since = since if self._since is None else min(self._since, since)
        return answer

    def _read_batch(self) -> None:
        batch, since = self._waiting, self._since
        self._waiting, self._since = {}, None
        if batch and since is not None:
            read = asyncio.create_task(self._answer(batch, since))
            self._reads.add(read)
            read.add_done_callback(self._reads.discard)

    async def _answer(
        self, batch: dict[str, list[asyncio.Future[list[FeedbackEvent]]]], since: datetime
    ) -> None:
        try:
            found = await self._store.customers_events_of_types(
                batch.keys(), CONTACT_TYPES, since, MAX_EVENTS
            )
        except Exception as exc:  # every waiting request learns it, none hangs
            for answers in batch.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
            return
        for customer_id, answers in batch.items():
            for answer in answers:
                if not answer.done():  # a request that timed out no longer waits
                    answer.set_result(found.get(customer_id, []))


def _rows(excluded: Mapping[str, str], item_row: Callable[[str], int | None]) -> np.ndarray | None:
    rows = {row for product in excluded if (row := item_row(product)) is not None}
    return np.array(sorted(rows), dtype=np.int64) if rows else None


def merge_exclude(*filters: np.ndarray | None) -> np.ndarray | None:
    """Union of exclude row arrays (unique, ascending, as the kernel wants), None if all empty.
    The lists are a few dozen rows: a set beats numpy's sort-based union by several times."""
    present = [f for f in filters if f is not None and len(f)]
    if len(present) < 2:
        return present[0] if present else None
    rows = set(present[0].tolist())
    for more in present[1:]:
        rows.update(more.tolist())
    return np.array(sorted(rows), dtype=np.int64)
