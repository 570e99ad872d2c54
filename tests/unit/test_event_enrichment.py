"""The consumer validates and enriches in one pass: the same event, accepted or refused alike, as
validating first and calling `enriched` after (what HTTP does)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from finverse_reco.events import PROCESSED_BY, InvalidEvent, parse_event, parse_event_bytes

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
VIEW = {
    "event_id": "e-1",
    "user_id": "u-1",
    "session_id": "s-1",
    "type": "product_view",
    "timestamp": "2026-01-01T12:00:00+02:00",
    "data": {"productId": "card-7", "viewDuration": 12.5, "category": " credit_card "},
}
COMPARISON = {
    "user_id": "u-2",
    "type": "comparison",
    "timestamp": "2026-01-01T12:00:00",
    "data": {"productIDs": ["card-1", "card-2"], "userDemographics": {"age_group": "25-34"}},
}


def both_ways(raw: dict[str, Any]) -> tuple[Any, Any]:
    """(one pass, validate then enrich); each the event, or the InvalidEvent reason."""
    outcomes = []
    for parse in (
        lambda: parse_event_bytes(
            orjson.dumps(raw), queue_source="product_views", received_at=RECEIVED
        ),
        lambda: parse_event(raw).enriched(queue_source="product_views", received_at=RECEIVED),
    ):
        try:
            outcomes.append(parse())
        except InvalidEvent as exc:
            outcomes.append(exc.reason)
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize(
    "raw",
    [
        VIEW,
        COMPARISON,  # no event_id: the content hash
        {**VIEW, "received_at": "2025-12-31T23:00:00Z", "queue_source": "x", "processed_by": "y"},
    ],
    ids=["view", "comparison", "producer-sent enrichment"],
)
def test_the_same_event(raw: dict[str, Any]) -> None:
    one_pass, two_steps = both_ways(raw)
    assert isinstance(one_pass, type(two_steps))
    assert one_pass == two_steps
    assert one_pass.model_fields_set == two_steps.model_fields_set
    assert (one_pass.received_at, one_pass.queue_source, one_pass.processed_by) == (
        RECEIVED,
        "product_views",
        PROCESSED_BY,
    )
    assert one_pass.received_at.tzinfo is UTC and one_pass.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        {**VIEW, "received_at": "yesterday"},  # overwritten on acceptance, but validated first
        {**VIEW, "queue_source": "q" * 129},
        {**VIEW, "data": {}},
        {**VIEW, "timestamp": "2999-01-01T00:00:00Z"},
    ],
    ids=["bad received_at", "long queue_source", "no product", "future"],
)
def test_the_same_refusal(raw: dict[str, Any]) -> None:
    one_pass, two_steps = both_ways(raw)
    assert isinstance(one_pass, str)
    assert one_pass == two_steps
