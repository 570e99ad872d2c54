"""Only trusted clients write events, only as JSON, only for known products at sane times."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.store import open_store

from .conftest import API_KEY, WRITER_KEY

INTERACTIONS = "/api/v1/interactions"
SECRET = "s" * 40


def an_event(user_id: str, **changes) -> dict:
    return {
        "user_id": user_id,
        "type": "product_view",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "data": {"productId": "prod_0001", "viewDuration": 12.0},
        **changes,
    }


def stored_for(settings, user_id: str) -> int:
    async def count() -> int:
        store = open_store(settings.store_url)
        await store.open()
        try:
            return len(await store.user_interactions(user_id, limit=100))
        finally:
            await store.close()

    return asyncio.run(count())


def a_user() -> str:
    return f"writer_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "not-a-key"}, {"X-API-Key": API_KEY}],
    ids=["no key", "wrong key", "the admin key"],
)
def test_a_write_without_a_writer_key_is_401_and_stores_nothing(client, trained, headers):
    user = a_user()
    response = client.post(INTERACTIONS, json=an_event(user), headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert stored_for(trained, user) == 0


def test_a_writer_key_writes(client, trained, writer_headers):
    user = a_user()
    response = client.post(INTERACTIONS, json=an_event(user), headers=writer_headers)
    assert response.status_code == 202, response.text
    assert stored_for(trained, user) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_is_accepted(client, trained, writer_headers, content_type):
    user = a_user()
    headers = dict(writer_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(INTERACTIONS, content=orjson.dumps(an_event(user)), headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert stored_for(trained, user) == 0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"data": {"productId": "prod_9999"}}, "unknown product(s): prod_9999"),
        (
            {"type": "comparison", "data": {"productIDs": ["prod_0001", "nope_1"]}},
            "unknown product(s): nope_1",
        ),
        ({"timestamp": "0001-01-01T00:00:00Z"}, "before 2000"),
        ({"timestamp": "1999-12-31T23:59:59Z"}, "before 2000"),
        ({"timestamp": "2026-11-01T12:00:00"}, "time zone"),
        ({"timestamp": "FUTURE"}, "in the future"),
    ],
    ids=["unknown product", "unknown compared", "year 0001", "1999", "naive", "future"],
)
def test_a_bad_event_is_422_with_its_reason_and_nothing_is_stored(
    client, trained, writer_headers, changes, reason
):
    user = a_user()
    if changes.get("timestamp") == "FUTURE":
        changes = {"timestamp": (datetime.now(UTC) + timedelta(minutes=6)).isoformat()}
    good = an_event(user)
    response = client.post(
        INTERACTIONS, json=[good, an_event(user, **changes)], headers=writer_headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["index"] == 1
    assert reason in error["details"][0]["reason"]
    assert stored_for(trained, user) == 0


def test_within_five_minutes_ahead_is_a_clock_skew_not_an_error(client, writer_headers):
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    response = client.post(
        INTERACTIONS, json=an_event(a_user(), timestamp=ahead), headers=writer_headers
    )
    assert response.status_code == 202, response.text


@pytest.fixture(scope="module")
def configured_client(trained):
    """Two writer keys (a rotation), a signing secret, unknown products allowed, a later window."""
    settings = trained.model_copy(
        update={
            "writer_api_keys": ["old-writer-key", "new-writer-key"],
            "writer_hmac_secret": SECRET,
            "accept_unknown_products": True,
            "event_earliest": datetime(2020, 1, 1, tzinfo=UTC),
            "event_max_future_seconds": 3600,
        }
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_both_keys_of_a_rotation_write_and_a_retired_one_does_not(configured_client):
    for key in ("old-writer-key", "new-writer-key"):
        response = configured_client.post(
            INTERACTIONS, json=an_event(a_user()), headers={"X-API-Key": key}
        )
        assert response.status_code == 202, (key, response.text)
    retired = configured_client.post(
        INTERACTIONS, json=an_event(a_user()), headers={"X-API-Key": WRITER_KEY}
    )
    assert retired.status_code == 401


def test_a_signed_body_writes_and_a_tampered_one_does_not(configured_client, trained):
    user = a_user()
    body = orjson.dumps(an_event(user))
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Signature": signature}
    assert configured_client.post(INTERACTIONS, content=body, headers=headers).status_code == 202
    tampered = body.replace(b"12.0", b"99.0")
    refused = configured_client.post(INTERACTIONS, content=tampered, headers=headers)
    assert refused.status_code == 401
    assert stored_for(trained, user) == 1


def test_a_signature_counts_only_when_a_secret_is_configured(client, trained):
    body = orjson.dumps(an_event(a_user()))
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        INTERACTIONS,
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )
    assert response.status_code == 401


def test_the_settings_move_the_rules(configured_client):
    unknown = an_event(a_user(), data={"productId": "prod_not_in_catalog"})
    ok = configured_client.post(INTERACTIONS, json=unknown, headers={"X-API-Key": "new-writer-key"})
    assert ok.status_code == 202, ok.text
    in_2019 = an_event(a_user(), timestamp="2019-06-01T00:00:00Z")
    early = configured_client.post(
        INTERACTIONS, json=in_2019, headers={"X-API-Key": "new-writer-key"}
    )
    assert early.status_code == 422 and "before 2020" in early.json()["error"]["message"]
    in_half_an_hour = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    later = an_event(a_user(), timestamp=in_half_an_hour)
    ahead = configured_client.post(
        INTERACTIONS, json=later, headers={"X-API-Key": "new-writer-key"}
    )
    assert ahead.status_code == 202, ahead.text
