"""Structured JSON logs: one object per line, the request id inside requests, no personal data."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from finverse_reco.observability import configure_logging, current_request_id, request_id_from


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def log_stream(restore_logging) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    return stream


def test_every_line_is_a_json_object_with_time_level_logger_and_message(log_stream):
    logging.getLogger("finverse_reco.somewhere").warning("model %s refused", "v1")
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("finverse_reco.somewhere").exception("it failed")
    first, second = lines(log_stream)
    assert first["level"] == "WARNING" and first["logger"] == "finverse_reco.somewhere"
    assert first["message"] == "model v1 refused"
    assert first["time"].startswith("20") and "request_id" not in first
    assert second["level"] == "ERROR" and "ValueError: broken" in second["exc_info"]


def test_the_level_comes_from_the_setting(restore_logging):
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    logging.getLogger("finverse_reco.x").info("hidden")
    logging.getLogger("finverse_reco.x").error("shown")
    assert [line["message"] for line in lines(stream)] == ["shown"]
    configure_logging("DEBUG", stream)  # configuring again replaces, never duplicates, the handler
    logging.getLogger("finverse_reco.x").debug("now shown")
    assert [line["message"] for line in lines(stream)] == ["shown", "now shown"]


def test_records_inside_a_request_carry_its_id(log_stream):
    token = current_request_id.set("req-42")
    try:
        logging.getLogger("finverse_reco.service").info("inside")
    finally:
        current_request_id.reset(token)
    logging.getLogger("finverse_reco.service").info("outside")
    inside, outside = lines(log_stream)
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_request_ids_from_callers_are_trusted_only_when_plain():
    assert request_id_from("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "a b", "x" * 129, "line\nbreak", "ünï"):
        generated = request_id_from(bad)
        assert len(generated) == 32 and generated != bad


def test_the_access_line_has_the_request_id_and_no_personal_data(log_stream, bare_client):
    response = bare_client.get(
        "/api/v1/recommendations/products/user_00042",
        params={"age_group": "25-34", "income_range": "50k-75k", "location": "Lisbon"},
        headers={"X-Request-ID": "trace-abc"},
    )
    assert response.headers["x-request-id"] == "trace-abc"
    access = [line for line in lines(log_stream) if line["logger"] == "finverse_reco.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "trace-abc"
    assert line["method"] == "GET" and line["status"] == response.status_code
    assert line["route"] == "/api/v1/recommendations/products/{user_id}"
    assert line["path"] == "/api/v1/recommendations/products/user_00042"
    assert line["duration_ms"] >= 0
    everything = log_stream.getvalue()
    for personal in ("25-34", "50k-75k", "Lisbon", "testclient"):
        assert personal not in everything


def test_probe_requests_are_logged_only_at_debug(log_stream, bare_client):
    bare_client.get("/health")
    bare_client.get("/api/v1/recommendations/similar-products/p1")
    routes = [line.get("route") for line in lines(log_stream) if line["logger"].endswith("access")]
    assert routes == ["/api/v1/recommendations/similar-products/{product_id}"]
