"""Online metrics: what customers did with the lists they were shown, from the store's events.

The unit is an *impressed item*: one product of one `impression` event (a served list shown on a
channel). A reaction of the same customer to the same product — a `product_click`, an
`application_submit`, a `dismiss` — counts for the impression before it, if it came within the
attribution window after it; a reaction that names its `recommendation_id` counts only for that
list's impression. A reaction counts once, for the latest impression it can belong to ("last
touch"), and an impressed item counts at most once per kind of reaction, so

    click-through rate = clicked impressed items / impressed items
    conversion rate    = impressed items applied for / impressed items
    dismissal rate     = impressed items dismissed / impressed items

Groups come from the impression: the model version, strategy and experiment arm the client echoes
from the response it shows (`data.modelVersion`, `data.strategy`, `data.arm`), the channel, and
the customer's segment (`data.userDemographics`: age group, income range). An impression that does
not say is counted under `unknown`. Pure: the events come in, the numbers go out; the store query
is the caller's (`InteractionStore.events_of_types`, a standard find on both stores).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from finverse_reco.events import EventType, FeedbackEvent
from finverse_reco.store import InteractionStore

UNKNOWN = "unknown"
IMPRESSION = EventType.IMPRESSION.value
REACTIONS = {
    EventType.PRODUCT_CLICK.value: "clicks",
    EventType.APPLICATION_SUBMIT.value: "applications",
    EventType.DISMISS.value: "dismissals",
}
FEEDBACK_TYPES = frozenset({IMPRESSION, *REACTIONS})
DIMENSIONS = ("model_version", "strategy", "arm", "channel", "age_group", "income_range")
COUNTS = ("impressions", *REACTIONS.values())


class OnlineStats:
    """Online metrics over the store's events: a period on demand (`GET /api/v1/stats/online`),
    and the trailing `metrics_period` for `/metrics`, read at most every `metrics_refresh`."""

    def __init__(
        self,
        store: InteractionStore,
        *,
        window: timedelta,
        metrics_period: timedelta,
        metrics_refresh: timedelta,
    ) -> None:
        self._store = store
        self.window = window
        self.metrics_period = metrics_period
        self._metrics_refresh = metrics_refresh.total_seconds()
        self._latest: tuple[float, dict[str, dict[str, Any]]] | None = None

    async def report(self, since: datetime, until: datetime, by: Sequence[str]) -> dict[str, Any]:
        """Raises StoreUnavailable, or ValueError for an unknown dimension."""
        return online_stats(
            await self._events(since, until), since=since, until=until, by=by, window=self.window
        )

    async def per_dimension(self, now: datetime) -> dict[str, dict[str, Any]]:
        """The trailing period's report by each dimension alone (what `/metrics` exports); the
        last one again if it is younger than `metrics_refresh`."""
        latest = self._latest
        if latest is not None and now.timestamp() - latest[0] < self._metrics_refresh:
            return latest[1]
        since = now - self.metrics_period
        events = await self._events(since, now)
        reports = {
            name: online_stats(events, since=since, until=now, by=[name], window=self.window)
            for name in DIMENSIONS
        }
        self._latest = (now.timestamp(), reports)
        return reports

    async def _events(self, since: datetime, until: datetime) -> list[FeedbackEvent]:
        # Reactions are read up to a window past the period: they may answer its last impressions.
        return await self._store.events_of_types(FEEDBACK_TYPES, since, until + self.window)


@dataclass(slots=True)
class _Impressed:
    """One product of one impression, and which reactions it drew."""

    at: float
    recommendation_id: str | None
    groups: dict[str, str]
    reactions: set[str] = field(default_factory=set)


def group_values(event: FeedbackEvent) -> dict[str, str]:
    return {name: getattr(event, name) or UNKNOWN for name in DIMENSIONS}


def online_stats(
    events: Iterable[FeedbackEvent],
    *,
    since: datetime,
    until: datetime,
    by: Sequence[str],
    window: timedelta,
) -> dict[str, Any]:
    """Counts and rates per group of `by` (dimension names, in order) for the impressions with
    since <= time < until; `events` must also hold the reactions up to `until + window`."""
    unknown = sorted(set(by) - set(DIMENSIONS))
    if unknown:
        raise ValueError(
            f"unknown dimension(s) {', '.join(unknown)}; known: {', '.join(DIMENSIONS)}"
        )
    impressed, reactions = _sort(events, since.timestamp(), until.timestamp())
    seconds = window.total_seconds()
    for key, reacted in reactions.items():
        shown = impressed.get(key)
        if not shown:
            continue
        times = [item.at for item in shown]
        for kind, at, recommendation_id in reacted:
            target = _attributed(shown, times, at, recommendation_id, seconds)
            if target is not None:
                target.reactions.add(kind)
    rows: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for shown in impressed.values():
        for item in shown:
            counts = rows[tuple(item.groups[name] for name in by)]
            counts["impressions"] += 1
            for kind in item.reactions:
                counts[kind] += 1
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "window_seconds": seconds,
        "by": list(by),
        "groups": [
            {"group": dict(zip(by, key, strict=True)), **counts, **rates(counts)}
            for key, counts in sorted(rows.items())
        ],
        "total": (total := _total(rows.values())) | rates(total),
    }


def rates(counts: dict[str, int]) -> dict[str, float]:
    shown = counts["impressions"]
    return {
        "click_through_rate": counts["clicks"] / shown if shown else 0.0,
        "conversion_rate": counts["applications"] / shown if shown else 0.0,
        "dismissal_rate": counts["dismissals"] / shown if shown else 0.0,
    }


def _total(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    total = dict.fromkeys(COUNTS, 0)
    for counts in rows:
        for name in COUNTS:
            total[name] += counts[name]
    return total


def _sort(
    events: Iterable[FeedbackEvent], since: float, until: float
) -> tuple[
    dict[tuple[str, str], list[_Impressed]],
    dict[tuple[str, str], list[tuple[str, float, str | None]]],
]:
    """Impressed items of the period and reactions, by (customer, product); impressions in time
    order."""
    impressed: dict[tuple[str, str], list[_Impressed]] = defaultdict(list)
    reactions: dict[tuple[str, str], list[tuple[str, float, str | None]]] = defaultdict(list)
    for event in events:
        at = event.timestamp
        if event.type == IMPRESSION:
            if since <= at < until:
                groups = group_values(event)
                for product in event.product_ids:
                    impressed[(event.user_id, product)].append(
                        _Impressed(at, event.recommendation_id, groups)
                    )
        elif event.type in REACTIONS and event.product_ids:
            key = (event.user_id, event.product_ids[0])
            reactions[key].append((REACTIONS[event.type], at, event.recommendation_id))
    for shown in impressed.values():
        shown.sort(key=lambda item: item.at)
    return impressed, reactions


def _attributed(
    shown: list[_Impressed],
    times: list[float],
    at: float,
    recommendation_id: str | None,
    window: float,
) -> _Impressed | None:
    """The impression a reaction at `at` counts for: the latest at or before it (of its list,
    when it names one), if the reaction came within the window."""
    candidates = shown[: bisect_right(times, at)]
    if recommendation_id is not None:
        candidates = [item for item in candidates if item.recommendation_id == recommendation_id]
    if not candidates:
        return None
    latest = candidates[-1]
    return latest if at - latest.at < window else None
