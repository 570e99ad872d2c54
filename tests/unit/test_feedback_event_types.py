"""Impressions and dismissals: what they must carry, and that `recommendation_id` is optional on
every event without changing the content-derived id of an event that has none."""

import pytest

from finverse_reco.events import (
    MAX_COMPARED_PRODUCTS,
    MAX_SHOWN_PRODUCTS,
    InvalidEvent,
    content_event_id,
    parse_event,
)

BASE = {"user_id": "u1", "timestamp": "2026-01-01T10:00:00Z"}


def impression(**changes):
    data = {"productIDs": ["p1", "p2"], "channel": "app_home"}
    return {**BASE, "type": "impression", "recommendation_id": "rec-1", "data": data, **changes}


def test_an_impression_names_its_list_channel_and_products():
    event = parse_event(impression())
    assert event.recommendation_id == "rec-1"
    assert event.data.channel == "app_home"
    assert event.product_ids() == ["p1", "p2"]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"recommendation_id": None}, "recommendation_id"),
        ({"data": {"productIDs": ["p1"]}}, "data.channel"),
        ({"data": {"channel": "app_home"}}, "productIDs"),
        ({"recommendation_id": "not an id!"}, "recommendation_id"),
        ({"data": {"productIDs": ["p1"], "channel": "app home"}}, "channel"),
    ],
)
def test_an_incomplete_impression_is_refused_with_the_reason(changes, words):
    with pytest.raises(InvalidEvent, match=words):
        parse_event(impression(**changes))


def test_a_dismissal_needs_its_product():
    assert parse_event({**BASE, "type": "dismiss", "data": {"productId": "p1"}}).product_ids() == [
        "p1"
    ]
    with pytest.raises(InvalidEvent, match="productId"):
        parse_event({**BASE, "type": "dismiss", "data": {}})


def test_a_whole_served_list_fits_an_impression_but_not_a_comparison():
    shown = [f"p{i}" for i in range(MAX_SHOWN_PRODUCTS)]
    assert len(
        parse_event(impression(data={"productIDs": shown, "channel": "web"})).product_ids()
    ) == (MAX_SHOWN_PRODUCTS)
    compared = {**BASE, "type": "comparison", "data": {"productIDs": shown}}
    with pytest.raises(InvalidEvent, match=f"at most {MAX_COMPARED_PRODUCTS}"):
        parse_event(compared)


def test_recommendation_id_is_optional_and_changes_the_content_id_only_when_given():
    click = {**BASE, "type": "product_click", "data": {"productId": "p1"}}
    before = content_event_id(click)
    assert content_event_id({**click, "recommendation_id": None}) == before
    assert content_event_id({**click, "recommendation_id": "rec-1"}) != before
    assert parse_event({**click, "recommendation_id": "rec-1"}).recommendation_id == "rec-1"
    assert parse_event(click).recommendation_id is None
