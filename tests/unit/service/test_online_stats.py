"""Online metrics from events: attribution of reactions to impressions, counts and rates."""

from datetime import UTC, datetime, timedelta

import pytest

from finverse_reco.events import FeedbackEvent, parse_event
from finverse_reco.service.online_stats import online_stats

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def shown(user, products, minute, rec, arm="control", version="v1", age="25-34"):
    return feedback(
        {
            "user_id": user,
            "type": "impression",
            "timestamp": at(minute),
            "recommendation_id": rec,
            "data": {
                "productIDs": products,
                "channel": "app_home",
                "arm": arm,
                "modelVersion": version,
                "strategy": "personalized",
                "userDemographics": {"age_group": age},
            },
        }
    )


def reaction(user, kind, product, minute, rec=None):
    raw = {"user_id": user, "type": kind, "timestamp": at(minute), "data": {"productId": product}}
    if rec:
        raw["recommendation_id"] = rec
    return feedback(raw)


def feedback(raw):
    return FeedbackEvent.from_event(parse_event(raw))


def stats(events, by=("arm",), window=HOUR, until=120):
    return online_stats(
        events, since=T0, until=T0 + timedelta(minutes=until), by=list(by), window=window
    )


def test_counts_and_rates_per_arm():
    events = [
        shown("u1", ["a", "b", "c"], 0, "r1"),
        reaction("u1", "product_click", "a", 5),
        reaction("u1", "product_click", "a", 6),  # the same item clicked twice: one click
        reaction("u1", "application_submit", "a", 10),
        reaction("u1", "dismiss", "b", 1),
        reaction("u1", "product_click", "z", 2),  # not shown: no impression to count for
        shown("u2", ["a", "d"], 0, "r2", arm="treatment", version="v2"),
        reaction("u2", "product_click", "d", 30),
    ]
    report = stats(events)
    by_arm = {row["group"]["arm"]: row for row in report["groups"]}
    assert by_arm["control"] == {
        "group": {"arm": "control"},
        "impressions": 3,
        "clicks": 1,
        "applications": 1,
        "dismissals": 1,
        "click_through_rate": pytest.approx(1 / 3),
        "conversion_rate": pytest.approx(1 / 3),
        "dismissal_rate": pytest.approx(1 / 3),
    }
    assert (by_arm["treatment"]["impressions"], by_arm["treatment"]["clicks"]) == (2, 1)
    assert report["total"]["impressions"] == 5 and report["total"]["clicks"] == 2
    assert report["total"]["click_through_rate"] == pytest.approx(0.4)


def test_a_reaction_outside_the_window_or_before_the_impression_does_not_count():
    events = [
        shown("u1", ["a", "b"], 10, "r1"),
        reaction("u1", "product_click", "a", 5),  # before it was shown
        reaction("u1", "product_click", "b", 10 + 60),  # exactly a window later: outside
    ]
    assert stats(events)["total"]["clicks"] == 0
    events[2] = reaction("u1", "product_click", "b", 10 + 59)
    assert stats(events)["total"]["clicks"] == 1


def test_last_touch_and_recommendation_id_attribution():
    events = [
        shown("u1", ["a"], 0, "r1", arm="control"),
        shown("u1", ["a"], 10, "r2", arm="treatment"),
        reaction("u1", "product_click", "a", 15),  # counts for the latest: r2
        reaction("u1", "application_submit", "a", 16, rec="r1"),  # names its list: r1
    ]
    by_arm = {row["group"]["arm"]: row for row in stats(events)["groups"]}
    assert (by_arm["control"]["clicks"], by_arm["control"]["applications"]) == (0, 1)
    assert (by_arm["treatment"]["clicks"], by_arm["treatment"]["applications"]) == (1, 0)


def test_impressions_outside_the_period_are_not_counted_and_groups_combine():
    events = [
        shown("u1", ["a"], -1, "r0"),
        shown("u1", ["a"], 0, "r1", age="18-24"),
        shown("u2", ["a"], 1, "r2", version="v2", age="18-24"),
        shown("u3", ["a"], 120, "r3"),  # at `until`: excluded
    ]
    report = stats(events, by=("model_version", "age_group"))
    assert [(r["group"], r["impressions"]) for r in report["groups"]] == [
        ({"model_version": "v1", "age_group": "18-24"}, 1),
        ({"model_version": "v2", "age_group": "18-24"}, 1),
    ]


def test_unknown_dimension_is_refused():
    with pytest.raises(ValueError, match="unknown dimension"):
        stats([], by=("colour",))
