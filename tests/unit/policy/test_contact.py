"""The contact rules' pure logic (policy/contact.py): impressions counted in the window on the
rule's channel since the latest click, and dismissals within theirs."""

from __future__ import annotations

from finverse_reco.events import FeedbackEvent
from finverse_reco.policy.contact import DAY_SECONDS, dismissed, over_contact_limit

NOW = 1_800_000_000.0


def shown(days_ago: float, *products: str, channel: str = "app") -> FeedbackEvent:
    return FeedbackEvent(
        None, "u", "impression", NOW - days_ago * DAY_SECONDS, products, None, channel
    )


def reacted(kind: str, days_ago: float, product: str) -> FeedbackEvent:
    return FeedbackEvent(None, "u", kind, NOW - days_ago * DAY_SECONDS, (product,))


def test_three_impressions_in_the_window_without_a_click_reach_the_limit() -> None:
    events = [shown(1, "a", "b"), shown(2, "a"), shown(3, "a", "b"), shown(8, "b")]
    assert over_contact_limit(events, NOW, 3, 7) == {"a"}  # b's third is 8 days old
    assert over_contact_limit(events, NOW, 2, 7) == {"a", "b"}


def test_a_click_starts_the_count_again() -> None:
    events = [shown(1, "a"), reacted("product_click", 1.5, "a"), shown(2, "a"), shown(3, "a")]
    assert over_contact_limit(events, NOW, 2, 7) == set()
    assert over_contact_limit([*events, shown(0.5, "a")], NOW, 2, 7) == {"a"}


def test_a_channel_limit_counts_that_channel_only() -> None:
    events = [shown(1, "a", channel="email"), shown(2, "a"), shown(3, "a")]
    assert over_contact_limit(events, NOW, 2, 7, channel="email") == set()
    assert over_contact_limit(events, NOW, 2, 7, channel="app") == {"a"}
    assert over_contact_limit(events, NOW, 3, 7) == {"a"}


def test_a_dismissal_holds_for_its_days_and_a_clock_ahead_does_not_undo_it() -> None:
    events = [
        reacted("dismiss", 29, "a"),
        reacted("dismiss", 31, "b"),
        reacted("dismiss", -0.01, "c"),
    ]
    assert dismissed(events, NOW, 30) == {"a", "c"}
    assert dismissed([shown(1, "d"), reacted("product_click", 1, "d")], NOW, 30) == set()
