"""A deterministic synthetic FinVerse world: catalog, users, and their interaction events.

Users act in sessions. Each session has an intent (a category drawn from the user's hidden category
weights); each product event picks a product by the user's hidden within-category preferences and
follows a plausible funnel (view → click → favourite/compare → apply). All randomness comes from one
`numpy.random.default_rng(seed)`, so the same arguments give byte-identical events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from finverse_reco.catalog.local import write_catalog_file
from finverse_reco.customers import CustomerProfile
from finverse_reco.demo.population import DemoUser, generate_population
from finverse_reco.demo.preferences import HiddenPreferences, hidden_preferences
from finverse_reco.demo.products import CATEGORIES, DemoCatalog, generate_catalog
from finverse_reco.demo.profiles import eligible_products, generate_profiles
from finverse_reco.demo.sampling import draw_rows
from finverse_reco.events import EventType
from finverse_reco.products import Product

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)

EVENT_MIX = {
    EventType.PRODUCT_VIEW: 0.55,
    EventType.PRODUCT_CLICK: 0.15,
    EventType.SEARCH: 0.10,
    EventType.COMPARISON: 0.08,
    EventType.FAVORITE: 0.05,
    EventType.APPLICATION_START: 0.04,
    EventType.APPLICATION_SUBMIT: 0.03,
}
MIN_EVENTS_PER_USER = 5
SESSION_MIN_EVENTS, SESSION_MAX_EVENTS = 3, 15
SESSION_SECONDS = 30 * 60
ACTIVITY_SIGMA = 0.8  # lognormal spread of per-user activity: a heavy tail of busy users
DRIFT = 0.1  # chance that one event of a session strays from its intent
REVISIT = 0.15  # chance that a view returns to a product already seen in the session
CLICK_BEST = 0.7  # chance that a click goes to the best-liked product seen, else to the latest
SUBMIT_SOON = 0.5  # chance that a user's next view is instead the submit of a pending application
CANDIDATES = 4  # fresh product draws per event; a comparison uses up to all of them
MEAN_GAP_SECONDS = 40.0
BASE_VIEW_SECONDS = 25.0
VIEW_LIKING = 0.8  # how strongly view time grows with the user's utility for the product

# Plain strings in the hot loops: comparing them is cheaper than going through the enum.
_VIEW, _CLICK = EventType.PRODUCT_VIEW.value, EventType.PRODUCT_CLICK.value
_SEARCH, _COMPARISON = EventType.SEARCH.value, EventType.COMPARISON.value
_START, _SUBMIT = EventType.APPLICATION_START.value, EventType.APPLICATION_SUBMIT.value

SEARCH_QUERIES = {
    "checking_account": ("checking account", "no fee checking", "online bank account"),
    "savings_account": ("high yield savings", "savings account rates", "best savings account"),
    "credit_card": ("cashback credit card", "travel rewards card", "low apr credit card"),
    "personal_loan": ("personal loan", "debt consolidation", "car loan rates"),
    "mortgage": ("mortgage rates", "30 year fixed mortgage", "first home loan"),
    "certificate_of_deposit": ("cd rates", "12 month cd", "certificate of deposit"),
    "investment_fund": ("index fund", "low fee investing", "growth fund"),
    "insurance": ("life insurance quote", "home insurance", "auto insurance"),
    "student_account": ("student account", "student bank account", "college checking"),
    "retirement_account": ("roth ira", "retirement savings", "annuity rates"),
}


@dataclass(frozen=True)
class DemoWorld:
    products: list[Product]
    users: list[DemoUser]
    events: list[dict]  # raw event dicts, each valid for finverse_reco.events.parse_event
    profiles: list[CustomerProfile]  # one per user, as of `end`


def generate_world(
    seed: int = 42,
    *,
    n_users: int = 2000,
    n_products: int = 240,
    n_events: int = 100_000,
    end: datetime = DEFAULT_END,
    days: int = 90,
) -> DemoWorld:
    """Build the whole world; events are in time order, with timestamps in [end - days, end)."""
    _check_arguments(seed, n_users, n_products, n_events, end, days)
    rng = np.random.default_rng(seed)
    catalog = generate_catalog(rng, n_products)
    population = generate_population(rng, n_users)
    preferences = hidden_preferences(rng, population, catalog)

    start_second = math.ceil((end - timedelta(days=days)).timestamp())
    window_seconds = math.ceil(end.timestamp()) - start_second
    sessions = _plan_sessions(rng, n_users, n_events, window_seconds)
    draws = _draw_events(rng, sessions, preferences, catalog)
    played = _play(sessions, draws, preferences, catalog)
    events = _event_dicts(seed, played, sessions, population.users, catalog, start_second)
    return DemoWorld(
        products=eligible_products(catalog),
        users=population.users,
        events=events,
        profiles=generate_profiles(seed, population, events, end),
    )


def write_world(world: DemoWorld, catalog_path: Path) -> None:
    """Write the world's catalog as the embedded catalog file."""
    write_catalog_file(catalog_path, world.products)


def _check_arguments(
    seed: int, n_users: int, n_products: int, n_events: int, end: datetime, days: int
) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if n_products < 2 * len(CATEGORIES):
        raise ValueError(
            f"n_products must be >= {2 * len(CATEGORIES)} (two per category), got {n_products}"
        )
    if n_events < MIN_EVENTS_PER_USER * n_users:
        raise ValueError(
            f"n_events must be >= {MIN_EVENTS_PER_USER} per user "
            f"({MIN_EVENTS_PER_USER * n_users} for {n_users} users), got {n_events}"
        )
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be a timezone-aware datetime")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")


@dataclass(frozen=True)
class _Sessions:
    user: np.ndarray  # per session: user index; a user's sessions are contiguous, in time order
    number: np.ndarray  # per session: 1-based number within its user
    first_event: np.ndarray  # per session: index of its first event; plus a final sentinel
    start: np.ndarray  # per session: seconds from the window start

    @property
    def of_event(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.user)), np.diff(self.first_event))


def _plan_sessions(
    rng: np.random.Generator, n_users: int, n_events: int, window_seconds: int
) -> _Sessions:
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    spare = n_events - MIN_EVENTS_PER_USER * n_users
    per_user = MIN_EVENTS_PER_USER + rng.multinomial(spare, activity / activity.sum())

    # Session lengths drawn up front, then cut so every user's total is exact and no session
    # falls outside [SESSION_MIN_EVENTS, SESSION_MAX_EVENTS].
    spread = SESSION_MAX_EVENTS - SESSION_MIN_EVENTS
    proposals = (SESSION_MIN_EVENTS + rng.binomial(spread, 0.35, n_events)).tolist()
    users, lengths = [], []
    cursor = 0
    for user, remaining in enumerate(per_user.tolist()):
        while remaining > SESSION_MAX_EVENTS:
            length = min(proposals[cursor], remaining - SESSION_MIN_EVENTS)
            cursor += 1
            users.append(user)
            lengths.append(length)
            remaining -= length
        users.append(user)
        lengths.append(remaining)

    user = np.asarray(users)
    counts = np.bincount(user, minlength=n_users)
    free_seconds = window_seconds - counts * SESSION_SECONDS
    if (free_seconds < 0).any():
        raise ValueError(
            f"a {window_seconds // 86400}-day window cannot hold {counts.max()} sessions of one "
            "user; give more days or fewer events"
        )
    # Non-overlapping sessions per user: sorted offsets in the free time, each pushed past the
    # sessions before it.
    first_of_user = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(user)) - first_of_user[user]
    offsets = rng.random(len(user)) * free_seconds[user]
    offsets = offsets[np.lexsort((offsets, user))]
    start = offsets.astype(np.int64) + rank * SESSION_SECONDS
    return _Sessions(
        user=user,
        number=rank + 1,
        first_event=np.concatenate(([0], np.cumsum(lengths))),
        start=start,
    )


@dataclass(frozen=True)
class _EventDraws:
    """Every random number the session play needs, drawn in bulk."""

    kind: np.ndarray  # index into EVENT_MIX; never a submit (those replace views while playing)
    category: np.ndarray  # the session's intent, or a drift away from it
    candidates: np.ndarray  # (n_events, CANDIDATES) product indices from the event's category
    choice: np.ndarray  # uniform: which behaviour
    follow: np.ndarray  # uniform: does an application go on to a submit
    pick: np.ndarray  # uniform: which of the seen products
    compared: np.ndarray  # how many products a comparison shows
    query: np.ndarray
    dwell_noise: np.ndarray
    gap_seconds: np.ndarray


def _draw_events(
    rng: np.random.Generator,
    sessions: _Sessions,
    preferences: HiddenPreferences,
    catalog: DemoCatalog,
) -> _EventDraws:
    n_events = int(sessions.first_event[-1])
    session = sessions.of_event
    user = sessions.user[session]
    # Submits are not drawn: each takes over a later view of a user with an application pending,
    # so it always follows its start and the views end near their share.
    mix = dict(EVENT_MIX)
    mix[EventType.PRODUCT_VIEW] += mix[EventType.APPLICATION_SUBMIT]
    mix[EventType.APPLICATION_SUBMIT] = 0.0
    kind = rng.choice(len(mix), size=n_events, p=list(mix.values()))
    intent = draw_rows(rng, preferences.category_weights[sessions.user])[session]
    drifted = rng.random(n_events) < DRIFT
    stray = draw_rows(rng, preferences.category_weights[user])
    category = np.where(drifted, stray, intent)

    candidates = np.empty((n_events, CANDIDATES), dtype=np.int64)
    for c in range(len(CATEGORIES)):
        events = np.flatnonzero(category == c)
        members = np.flatnonzero(catalog.category == c)
        weights = preferences.choice_weights[user[events]][:, members]
        candidates[events] = members[draw_rows(rng, weights, per_row=CANDIDATES)]

    return _EventDraws(
        kind=kind,
        category=category,
        candidates=candidates,
        choice=rng.random(n_events),
        follow=rng.random(n_events),
        pick=rng.random(n_events),
        compared=rng.integers(2, CANDIDATES + 1, n_events),
        query=rng.integers(0, 1 << 30, n_events),
        dwell_noise=rng.lognormal(0.0, 0.35, n_events),
        gap_seconds=(2 + rng.exponential(MEAN_GAP_SECONDS, n_events)).astype(np.int64),
    )


@dataclass(frozen=True)
class _Played:
    """Per event, in generation order: what happened and when."""

    kind: list[str]  # EventType values
    products: list[list[int]]  # product indices it touches; empty for a search
    category: list[int]
    view_seconds: list[float | None]
    query: list[str | None]
    offset: np.ndarray  # seconds from the window start


def _play(
    sessions: _Sessions,
    draws: _EventDraws,
    preferences: HiddenPreferences,
    catalog: DemoCatalog,
) -> _Played:
    """Walk each session in order, turning the bulk draws into a coherent funnel."""
    kinds = [t.value for t in EVENT_MIX]
    follow_through = (
        EVENT_MIX[EventType.APPLICATION_SUBMIT] / EVENT_MIX[EventType.APPLICATION_START]
    )
    product_category = catalog.category.tolist()
    members = [np.flatnonzero(catalog.category == c).tolist() for c in range(len(CATEGORIES))]
    utility = preferences.utility
    # View time grows with liking relative to what the user typically looks at in that category.
    in_category = catalog.category[:, None] == np.arange(len(CATEGORIES))
    typical_liking = ((preferences.choice_weights * utility) @ in_category).tolist()
    kind_of, category_of = draws.kind.tolist(), draws.category.tolist()
    candidates, choice, pick = draws.candidates.tolist(), draws.choice.tolist(), draws.pick.tolist()
    follow, compared, query = draws.follow.tolist(), draws.compared.tolist(), draws.query.tolist()
    noise, gaps = draws.dwell_noise.tolist(), draws.gap_seconds.tolist()

    out_kind: list[str] = []
    out_products: list[list[int]] = []
    out_category: list[int] = []
    out_view: list[float | None] = []
    out_query: list[str | None] = []
    offsets = np.empty(len(kind_of), dtype=np.int64)
    bounds = sessions.first_event.tolist()
    pending: list[int] = []  # applications the current user started and will submit
    current_user = -1
    for s, (u, start) in enumerate(
        zip(sessions.user.tolist(), sessions.start.tolist(), strict=True)
    ):
        if u != current_user:
            current_user, pending = u, []
            liking = utility[u].tolist()
        seen: list[int] = []
        clock, stamps = 0, []
        for e in range(bounds[s], bounds[s + 1]):
            kind, category = kinds[kind_of[e]], category_of[e]
            fresh = candidates[e]
            view_seconds = None
            if kind == _VIEW and pending and follow[e] < SUBMIT_SOON:
                kind = _SUBMIT
            if kind == _SEARCH:
                touched: list[int] = []
                options = SEARCH_QUERIES[CATEGORIES[category]]
                out_query.append(options[query[e] % len(options)])
            else:
                out_query.append(None)
                if kind == _COMPARISON:
                    touched = _compared(seen, fresh, category, compared[e], product_category)
                    touched = _at_least_two(touched, members[category], pick[e])
                elif kind == _SUBMIT:
                    touched = [pending.pop(0)]
                elif kind == _VIEW:
                    revisit = seen and choice[e] < REVISIT
                    touched = [seen[int(pick[e] * len(seen))] if revisit else fresh[0]]
                elif kind == _CLICK and seen and choice[e] >= CLICK_BEST:
                    touched = [seen[-1]]
                else:  # click, favourite, application start: the best-liked product seen
                    touched = [max(seen, key=liking.__getitem__) if seen else fresh[0]]
                if kind == _START and follow[e] < follow_through:
                    pending.append(touched[0])
                if kind == _VIEW:
                    p = touched[0]
                    gain = liking[p] - typical_liking[u][product_category[p]]
                    view_seconds = BASE_VIEW_SECONDS * math.exp(VIEW_LIKING * gain) * noise[e]
                    view_seconds = round(min(max(view_seconds, 2.0), 900.0), 1)
                category = product_category[touched[0]]
                seen.extend(p for p in touched if p not in seen)
            out_kind.append(kind)
            out_products.append(touched)
            out_category.append(category)
            out_view.append(view_seconds)
            stamps.append(clock)
            clock += gaps[e] + int(view_seconds or 0)
        # Squeeze long sessions into their half hour; order within a session survives.
        span = stamps[-1]
        if span >= SESSION_SECONDS:
            stamps = [t * (SESSION_SECONDS - 1) // span for t in stamps]
        offsets[bounds[s] : bounds[s + 1]] = [start + t for t in stamps]
    return _Played(out_kind, out_products, out_category, out_view, out_query, offsets)


def _compared(
    seen: list[int], fresh: list[int], category: int, size: int, product_category: list[int]
) -> list[int]:
    """Up to `size` products of one category: the latest ones seen, then fresh draws."""
    recent = [p for p in reversed(seen) if product_category[p] == category][:2]
    return list(dict.fromkeys(recent + fresh))[:size]


def _at_least_two(products: list[int], category_members: list[int], pick: float) -> list[int]:
    """A comparison needs two products; when preferences are peaked, add another of the category."""
    start = int(pick * len(category_members))
    for offset in range(len(category_members)):
        if len(products) >= 2:
            break
        other = category_members[(start + offset) % len(category_members)]
        if other not in products:
            products.append(other)
    return products


def _event_dicts(
    seed: int,
    played: _Played,
    sessions: _Sessions,
    users: list[DemoUser],
    catalog: DemoCatalog,
    start_second: int,
) -> list[dict[str, Any]]:
    order = np.argsort(played.offset, kind="stable")
    instants = np.datetime64(start_second, "s") + played.offset[order]
    timestamps = [f"{t}Z" for t in np.datetime_as_string(instants, unit="s").tolist()]
    session_of_event = sessions.of_event.tolist()
    user_of_session = sessions.user.tolist()
    session_ids = [
        f"sess_{users[u].id}_{n:03d}"
        for u, n in zip(user_of_session, sessions.number.tolist(), strict=True)
    ]
    products = catalog.products
    events = []
    for n, e in enumerate(order.tolist()):
        s = session_of_event[e]
        user = users[user_of_session[s]]
        kind, touched = played.kind[e], played.products[e]
        data: dict[str, Any]
        if kind == _SEARCH:
            data = {"query": played.query[e], "category": CATEGORIES[played.category[e]]}
        elif kind == _COMPARISON:
            data = {
                "productIDs": [products[p].id for p in touched],
                "category": CATEGORIES[played.category[e]],
            }
        else:
            product = products[touched[0]]
            data = {
                "productId": product.id,
                "category": product.category,
                "institution": product.institution,
            }
            if played.view_seconds[e] is not None:
                data["viewDuration"] = played.view_seconds[e]
        data["userDemographics"] = {
            "age_group": user.age_group,
            "income_range": user.income_range,
            "location": user.location,
        }
        events.append(
            {
                "event_id": f"demo-{seed}-{n:07d}",
                "user_id": user.id,
                "session_id": session_ids[s],
                "type": kind,
                "timestamp": timestamps[n],
                "data": data,
            }
        )
    return events
