"""Every served list has an id, and its audit record says what was shown, to whom and why."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

RECS = "/api/v1/recommendations"
AUDIT = "/api/v1/audit"


def stored_record(client, admin_headers, recommendation_id: str) -> dict:
    """The record, once the trail has written it (it is written off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        components = client.app.state.components
        if components.audit.buffered == 0:
            response = client.get(
                f"{AUDIT}/recommendations/{recommendation_id}", headers=admin_headers
            )
            assert response.status_code == 200, response.text
            return response.json()
        assert time.monotonic() < deadline, "the audit trail did not write its buffer"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("path", "subject", "subject_id"),
    [
        (f"{RECS}/products/user_00004?limit=7", "user_id", "user_00004"),
        (f"{RECS}/session/sess_audit_nobody", "session_id", "sess_audit_nobody"),
        (f"{RECS}/similar-products/prod_0003?limit=4", "product_id", "prod_0003"),
    ],
)
def test_a_served_list_is_recorded_as_it_was_shown(
    client, admin_headers, path, subject, subject_id
):
    served = client.get(path)
    assert served.status_code == 200
    body = served.json()
    recommendation_id = body["recommendation_id"]
    assert served.headers["X-Recommendation-ID"] == recommendation_id
    assert len(recommendation_id) == 32

    record = stored_record(client, admin_headers, recommendation_id)

    assert record[subject] == subject_id
    assert {"user_id", "session_id", "product_id"} - {subject} == {
        key for key in ("user_id", "session_id", "product_id") if record[key] is None
    }
    assert record["model_version"] == body["model_version"]
    assert record["strategy"] == body["strategy"]
    assert record["degraded"] == body["degraded"]
    assert [(item["id"], item["rank"], item["reason"]) for item in record["items"]] == [
        (rec["id"], rec["rank"], rec["reason"]["text"]) for rec in body["recommendations"]
    ]
    assert [item["score"] for item in record["items"]] == pytest.approx(
        [rec["score"] for rec in body["recommendations"]]
    )
    served_at = datetime.fromisoformat(record["served_at"])
    assert abs(served_at - datetime.fromisoformat(body["timestamp"])) < timedelta(milliseconds=1)


def test_every_list_gets_its_own_id(client):
    ids = {client.get(f"{RECS}/products/user_00005").json()["recommendation_id"] for _ in range(5)}
    assert len(ids) == 5


def test_a_customers_records_newest_first_since_a_time(client, admin_headers):
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    served = [client.get(f"{RECS}/products/user_00006").json() for _ in range(3)]
    stored_record(client, admin_headers, served[-1]["recommendation_id"])

    since = before.isoformat().replace("+00:00", "Z")
    response = client.get(
        f"{AUDIT}/customers/user_00006", params={"since": since}, headers=admin_headers
    )
    assert response.status_code == 200
    listed = [r["recommendation_id"] for r in response.json()["records"]]
    assert listed == [s["recommendation_id"] for s in reversed(served)]
    later = client.get(
        f"{AUDIT}/customers/user_00006",
        params={"since": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()},
        headers=admin_headers,
    )
    assert later.json()["records"] == []


def test_the_audit_api_is_for_admins_and_answers_404_and_422(client, admin_headers):
    unknown = "f" * 32
    assert client.get(f"{AUDIT}/recommendations/{unknown}").status_code == 401
    assert client.get(f"{AUDIT}/customers/user_00001").status_code == 401
    missing = client.get(f"{AUDIT}/recommendations/{unknown}", headers=admin_headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad_id = client.get(f"{AUDIT}/recommendations/not-an-id", headers=admin_headers)
    assert bad_id.status_code == 422
    naive = client.get(
        f"{AUDIT}/customers/user_00001",
        params={"since": "2026-01-01T00:00:00"},
        headers=admin_headers,
    )
    assert naive.status_code == 422
