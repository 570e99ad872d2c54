"""Contact limits and dismissals, rules of the policy file, on every list path against both stores:
a product shown 3 times in 7 days without a click, or dismissed within its window, is not in the
next list, and `explain=true` names the rule that took it out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clustered_index import clustered_index  # tests/support

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.events import parse_event
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.policy import Policy, RulesFile
from finverse_reco.service import customers
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.recommendations import RecommendationService, ServiceConfig
from finverse_reco.store import InteractionStore

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = {
    "version": "contact-1",
    "rules": [
        {"kind": "contact_limit", "max_impressions": 3, "days": 7},
        {"kind": "contact_limit", "max_impressions": 1, "days": 7, "channel": "email"},
        {"kind": "dismissed", "days": 30},
    ],
}


def feedback(user: str, kind: str, days_ago: float, products, **extra: Any):
    at = (NOW - timedelta(days=days_ago)).isoformat()
    data: dict[str, Any] = dict(extra)
    if kind == "impression":
        data |= {"productIDs": list(products), "channel": extra.get("channel", "app_home")}
        return parse_event(
            {
                "user_id": user,
                "type": kind,
                "timestamp": at,
                "recommendation_id": f"r{days_ago}",
                "data": data,
            }
        )
    raw = {"user_id": user, "type": kind, "timestamp": at, "data": {"productId": products, **data}}
    return parse_event(raw)


@pytest.fixture
def index():
    return clustered_index()


def serving(store: InteractionStore, index, rules: dict) -> RecommendationService:
    """The service with only these rules (an empty catalog: nothing counts as withdrawn)."""
    return RecommendationService(
        ModelHolder(index),
        store,
        LocalCatalog([]),
        ServiceConfig(weighting=WeightingConfig()),
        Policy(RulesFile.model_validate(rules)),
    )


@pytest.fixture
def service(store: InteractionStore, index) -> RecommendationService:
    return serving(store, index, RULES)


def excluded(result, rule: str) -> list[str]:
    """What `explain=true` says this rule took out of the list."""
    return result.explanation["excluded"].get(rule, [])


async def test_three_impressions_in_seven_days_without_a_click_hide_the_product(
    store, service, index
):
    user = index.users.id(0)
    first = (await service.for_user(user, 5)).product_ids
    shown = first[0]
    await store.insert_many([feedback(user, "impression", d, first[:3]) for d in (1, 2)])
    assert (await service.for_user(user, 5)).product_ids[0] == shown  # twice: still shown

    await store.insert_many([feedback(user, "impression", 0.5, first[:3])])
    after = await service.for_user(user, 5, explain=True)
    assert shown not in after.product_ids and first[1] not in after.product_ids
    assert len(after.product_ids) == 5  # filled from further down
    assert excluded(after, "contact_limit") == sorted(first[:3])
    assert excluded(after, "dismissed") == []
    filtered = {entry["id"]: entry["rules"] for entry in after.explanation["filtered"]}
    assert filtered[shown] == ["contact_limit"]


async def test_a_click_starts_the_count_again_and_old_impressions_do_not_count(
    store, service, index
):
    user = index.users.id(1)
    shown = (await service.for_user(user, 5)).product_ids[0]
    await store.insert_many(
        [
            feedback(user, "impression", 9, [shown]),  # older than 7 days
            feedback(user, "impression", 8, [shown]),
            feedback(user, "impression", 3, [shown]),
            feedback(user, "product_click", 2.5, shown),
            feedback(user, "impression", 2, [shown]),
            feedback(user, "impression", 1, [shown]),
        ]
    )
    assert shown in (await service.for_user(user, 5)).product_ids  # 2 since the click
    await store.insert_many([feedback(user, "impression", 0.1, [shown])])
    assert shown not in (await service.for_user(user, 5)).product_ids


async def test_a_dismissed_product_does_not_come_back_within_its_window(store, service, index):
    user, other = index.users.id(2), index.users.id(5)  # both in the same cluster
    first = (await service.for_user(user, 5)).product_ids
    await store.insert_many(
        [
            feedback(user, "dismiss", 0.01, first[1]),
            feedback(user, "dismiss", 31, first[2]),  # its window (30 days) is over
        ]
    )
    after = await service.for_user(user, 5, explain=True)
    assert first[1] not in after.product_ids
    assert first[2] in after.product_ids
    assert excluded(after, "dismissed") == [first[1]]
    someone_else = await service.for_user(other, 10, explain=True)
    assert excluded(someone_else, "dismissed") == []  # someone else's dismissal


async def test_a_channel_limit_applies_to_lists_for_that_channel(store, service, index):
    user = index.users.id(3)
    shown = (await service.for_user(user, 5)).product_ids[0]
    await store.insert_many([feedback(user, "impression", 1, [shown], channel="email")])
    assert shown not in (await service.for_user(user, 5, channel="email")).product_ids
    assert shown in (await service.for_user(user, 5, channel="app_home")).product_ids
    assert shown in (await service.for_user(user, 5)).product_ids
    # Similar products for the customer: the same rules, the same channel.
    similar = await service.similar_products(shown, 5, user_id=user, channel="email")
    assert similar.product_ids and shown not in similar.product_ids


async def test_a_category_limit_applies_to_that_category_only(store, index):
    rules = {
        "version": "card-limit",
        "rules": [{"kind": "contact_limit", "max_impressions": 1, "days": 7, "category": "card"}],
    }
    service = serving(store, index, rules)
    user = "fresh-customer"
    popular = (await service.for_user(user, 30)).product_ids
    card = next(p for p in popular if index.item_meta(index.items.row(p))[0] == "card")
    loan = next(p for p in popular if index.item_meta(index.items.row(p))[0] == "loan")
    await store.insert_many([feedback(user, "impression", 1, [card, loan])])
    after = (await service.for_user(user, 30)).product_ids
    assert card not in after and loan in after


async def test_every_path_applies_them_popular_and_session(store, service, index):
    newcomer = "new-customer"
    popular = await service.for_user(newcomer, 5)
    assert popular.strategy == "popular"
    await store.insert_many([feedback(newcomer, "dismiss", 0.01, popular.product_ids[0])])
    assert popular.product_ids[0] not in (await service.for_user(newcomer, 5)).product_ids

    # A session's customer is whoever its events belong to.
    customer = index.users.id(4)
    viewed = index.items.id(7)
    view = parse_event(
        {
            "user_id": customer,
            "session_id": "sess-1",
            "type": "product_view",
            "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
            "data": {"productId": viewed},
        }
    )
    await store.insert_many([view])
    session_list = await service.for_session("sess-1", 5)
    assert session_list.strategy == "session"
    await store.insert_many([feedback(customer, "dismiss", 0.001, session_list.product_ids[0])])
    again = await service.for_session("sess-1", 5, explain=True)
    assert session_list.product_ids[0] not in again.product_ids
    assert excluded(again, "dismissed") == [session_list.product_ids[0]]

    # Similar products name the customer: their dismissal holds there too.
    base = index.items.id(0)
    similar = await service.similar_products(base, 5, user_id=customer)
    await store.insert_many([feedback(customer, "dismiss", 0.001, similar.product_ids[0])])
    assert (
        similar.product_ids[0]
        not in (await service.similar_products(base, 5, user_id=customer)).product_ids
    )


async def test_many_impressions_never_hide_an_application(store, index, monkeypatch):
    """The policy reads a customer's applications and feedback in one call, capped per type: more
    impressions than the cap do not push an old application out of what the rules see."""
    monkeypatch.setattr(customers, "MAX_ACTIVITY", 3)
    rules = {"version": "both", "rules": [{"kind": "applied"}, *RULES["rules"]]}
    service = serving(store, index, rules)
    user = index.users.id(6)
    first = (await service.for_user(user, 5)).product_ids
    applied = feedback(user, "application_submit", 200, first[0])
    others = [p for p in map(index.items.id, range(30)) if p not in first][:8]
    shown = [feedback(user, "impression", 0.1 * (n + 1), [p]) for n, p in enumerate(others)]
    await store.insert_many([applied, *shown])
    after = await service.for_user(user, 5, explain=True)
    assert first[0] not in after.product_ids
    assert excluded(after, "applied") == [first[0]]
