"""JSON-lines files for `finverse-reco publish`, and the message a published event becomes."""

from __future__ import annotations

import orjson
import pytest

from finverse_reco.events import parse_event_bytes
from finverse_reco.ingest import EventFileError, read_events_file
from finverse_reco.ingest.publisher import event_message

VIEW = {
    "user_id": "u-1",
    "type": "product_view",
    "timestamp": "2026-01-01T12:00:00Z",
    "data": {"productId": "card-7", "viewDuration": 12.5},
}


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_valid_file_gives_validated_events_and_skips_blank_lines(tmp_path):
    search = {**VIEW, "event_id": "s-1", "type": "search", "data": {"query": "gold card"}}
    path = write_lines(tmp_path / "events.jsonl", [orjson.dumps(VIEW), b"", orjson.dumps(search)])
    first, second = read_events_file(path)
    assert first.event_id.startswith("h:")  # no id given: a content hash
    assert first.data.viewDuration == 12.5
    assert (second.event_id, second.type.value) == ("s-1", "search")


def test_invalid_lines_are_all_reported_with_their_numbers_and_nothing_is_returned(tmp_path):
    lines = [orjson.dumps(VIEW), b"{not json", orjson.dumps({**VIEW, "user_id": "bad id!"})]
    with pytest.raises(EventFileError) as error:
        read_events_file(write_lines(tmp_path / "events.jsonl", lines))
    message = str(error.value)
    assert "2 invalid events" in message
    assert "line 2:" in message and "line 3: user_id" in message
    assert "\n  line 1:" not in message


def test_a_published_message_round_trips_through_the_consumers_validator():
    (event,) = [parse_event_bytes(orjson.dumps(VIEW))]
    enriched = event.enriched(queue_source="product_views")
    message = event_message(enriched)
    assert message.message_id == event.event_id
    assert message.content_type == "application/json"
    body = orjson.loads(message.body)
    assert "queue_source" not in body and "received_at" not in body  # the consumer sets those
    assert parse_event_bytes(message.body) == event
