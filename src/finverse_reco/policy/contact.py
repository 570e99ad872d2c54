"""Contact limits and dismissals from a customer's recent feedback: pure, events in, product ids out
(the `contact_limit` and `dismissed` rule kinds in policy/rules.py apply them).

- A **contact limit** — "not shown after 3 impressions in 7 days without a click" — counts the
  customer's impressions of a product in the last `days`, after their latest click on it (a click
  starts the count again). At `max_impressions` the product is out. A limit scoped to a `channel`
  counts only impressions on that channel and applies only to lists requested for that channel.
- A **dismissed** product is out for `days` after the customer dismissed it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from finverse_reco.events import EventType, FeedbackEvent

IMPRESSION, CLICK, DISMISS = (
    EventType.IMPRESSION.value,
    EventType.PRODUCT_CLICK.value,
    EventType.DISMISS.value,
)
DAY_SECONDS = 86_400


def over_contact_limit(
    events: Iterable[FeedbackEvent],
    now: float,
    max_impressions: int,
    days: float,
    channel: str | None = None,
) -> set[str]:
    """The products shown `max_impressions` times or more in the `days` before `now` (seconds
    since the epoch) and not clicked since the first of those; only impressions on `channel`
    count when one is given."""
    since = now - days * DAY_SECONDS
    shown: dict[str, list[float]] = defaultdict(list)
    last_click: dict[str, float] = {}
    for event in events:
        at = event.timestamp
        if event.type == IMPRESSION:
            if since < at <= now and (channel is None or event.channel == channel):
                for product in event.product_ids:
                    shown[product].append(at)
        elif event.type == CLICK and event.product_ids:
            product = event.product_ids[0]
            last_click[product] = max(last_click.get(product, at), at)
    over = set()
    for product, times in shown.items():
        clicked = last_click.get(product)
        count = len(times) if clicked is None else sum(1 for at in times if at > clicked)
        if count >= max_impressions:
            over.add(product)
    return over


def dismissed(events: Iterable[FeedbackEvent], now: float, days: float) -> set[str]:
    """The products the customer dismissed in the `days` before `now` (or after it: a client
    clock ahead of ours does not undo a dismissal)."""
    since = now - days * DAY_SECONDS
    return {
        event.product_ids[0]
        for event in events
        if event.type == DISMISS and event.product_ids and event.timestamp >= since
    }
