"""Consent to personalisation, through HTTP: `PUT /api/v1/customers/{user_id}/consent` (admin), and
a customer who objected is served global popularity on every path, still through the policy step,
with an audit record that keeps what was shown but no scores or reasons."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from policy_reference import violations  # tests/support

from finverse_reco.api.app import create_app
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.policy import DEFAULT_RULES_FILE

from .test_policy import known_of

RULES = tomllib.loads(DEFAULT_RULES_FILE.read_text())
RECS = "/api/v1/recommendations"
KNOWN = "user_00250"  # a customer the model was trained on


def consent_url(user_id: str) -> str:
    return f"/api/v1/customers/{user_id}/consent"


def profile_url(user_id: str) -> str:
    return f"/api/v1/customers/{user_id}/profile"


def now() -> str:
    return datetime.now(UTC).isoformat()


def set_consent(client, admin_headers, user_id: str, personalisation: bool) -> dict:
    response = client.put(
        consent_url(user_id),
        json={"personalisation": personalisation, "updated_at": now()},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def objecting(client, admin_headers) -> Iterator[str]:
    """KNOWN objects for the test's length (the app is shared by the package's tests)."""
    set_consent(client, admin_headers, KNOWN, False)
    yield KNOWN
    set_consent(client, admin_headers, KNOWN, True)


# --- the endpoint -------------------------------------------------------------------------------


def test_consent_needs_the_admin_key(client, writer_headers) -> None:
    body = {"personalisation": False}
    assert client.put(consent_url("cust_c_key"), json=body).status_code == 401
    assert (
        client.put(consent_url("cust_c_key"), json=body, headers=writer_headers).status_code == 401
    )


def test_consent_without_a_profile_makes_a_minimal_one(client, admin_headers) -> None:
    body = {"personalisation": False, "updated_at": "2026-11-28T09:00:00Z"}
    put = client.put(consent_url("cust_c_new"), json=body, headers=admin_headers)
    assert put.status_code == 200, put.text
    got = client.get(profile_url("cust_c_new"), headers=admin_headers).json()
    assert got == put.json()
    assert got["personalisation_consent"] is False
    assert got["updated_at"] == "2026-11-28T09:00:00Z"
    assert (got["holdings"], got["residency"], got["kyc_status"]) == ([], None, None)


def test_consent_keeps_the_rest_of_the_profile_and_a_profile_keeps_consent(
    client, admin_headers
) -> None:
    profile = {"residency": "US", "kyc_status": "verified", "holdings": ["prod_0012"]}
    first = {**profile, "updated_at": "2026-11-27T12:00:00Z"}
    assert client.put(profile_url("cust_c_keep"), json=first, headers=admin_headers).is_success
    body = {"personalisation": False, "updated_at": "2026-11-28T09:00:00Z"}
    got = client.put(consent_url("cust_c_keep"), json=body, headers=admin_headers).json()
    assert {key: got[key] for key in profile} == profile
    assert got["personalisation_consent"] is False
    # The bank's next profile says nothing of consent: the objection stays.
    later = {**profile, "holdings": [], "updated_at": "2026-11-29T09:00:00Z"}
    assert client.put(profile_url("cust_c_keep"), json=later, headers=admin_headers).is_success
    got = client.get(profile_url("cust_c_keep"), headers=admin_headers).json()
    assert got["holdings"] == [] and got["personalisation_consent"] is False


def test_an_older_consent_is_409_and_changes_nothing(client, admin_headers) -> None:
    newer = {"personalisation": True, "updated_at": "2026-11-28T09:00:00Z"}
    assert client.put(consent_url("cust_c_old"), json=newer, headers=admin_headers).is_success
    older = {"personalisation": False, "updated_at": "2026-11-28T08:59:59Z"}
    response = client.put(consent_url("cust_c_old"), json=older, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    got = client.get(profile_url("cust_c_old"), headers=admin_headers).json()
    assert got["personalisation_consent"] is True


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "personalisation"),
        ({"personalisation": "perhaps"}, "personalisation"),
        ({"personalisation": None}, "personalisation"),
        ({"personalisation": False, "scope": "all"}, "scope"),
        ({"personalisation": False, "updated_at": "2999-01-01T00:00:00Z"}, "future"),
        ({"personalisation": False, "updated_at": "yesterday"}, "updated_at"),
        ([False], "JSON object"),
    ],
)
def test_bad_consent_bodies_are_422_and_nothing_is_stored(client, admin_headers, body, words):
    response = client.put(consent_url("cust_c_bad"), json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]
    assert client.get(profile_url("cust_c_bad"), headers=admin_headers).status_code == 404


def test_malformed_json_is_400(client, admin_headers) -> None:
    response = client.put(
        consent_url("cust_c_raw"),
        content=b"{not json",
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "error" in response.json()


# --- serving ------------------------------------------------------------------------------------


def test_a_known_customer_who_objects_gets_policy_respecting_popular_lists(
    client, admin_headers, trained, objecting
) -> None:
    catalog = {p.id: p for p in read_catalog_file(trained.catalog_path)}
    body = client.get(f"{RECS}/products/{objecting}?limit=10").json()
    assert body["strategy"] == "popular" and body["degraded"] is False
    assert len(body["recommendations"]) == 10
    known = known_of(client, admin_headers, objecting)
    assert known.profile is not None and known.profile.personalisation_consent is False
    for item in body["recommendations"]:
        assert not violations(item["id"], catalog, RULES, known, datetime.now(UTC))
    # Global popularity, not their segment's: a request naming a segment gets the same list.
    segment = client.get(f"{RECS}/products/{objecting}?limit=10&age_group=65%2B").json()
    assert [i["id"] for i in segment["recommendations"]] == [
        i["id"] for i in body["recommendations"]
    ]
    # The policy still applies: a product they now hold leaves the list at once.
    held = body["recommendations"][0]["id"]
    profile = known.profile.model_dump(mode="json") | {"updated_at": now()}
    profile["holdings"] = [*profile["holdings"], held]
    del profile["personalisation_consent"]  # silent on consent: the objection stays
    assert client.put(profile_url(objecting), json=profile, headers=admin_headers).is_success
    after = client.get(f"{RECS}/products/{objecting}?limit=10").json()
    assert after["strategy"] == "popular" and len(after["recommendations"]) == 10
    assert held not in {item["id"] for item in after["recommendations"]}
    # Consenting again personalises them again, from the very next request.
    set_consent(client, admin_headers, objecting, True)
    assert client.get(f"{RECS}/products/{objecting}").json()["strategy"] == "personalized"


def test_a_new_customer_who_objects_is_not_folded_in(client, admin_headers, writer_headers):
    user = "cust_c_fresh"
    views = [
        {
            "user_id": user,
            "session_id": "sess_c_fresh",
            "type": "product_view",
            "timestamp": now(),
            "data": {"productId": f"prod_00{n}", "viewDuration": 40},
        }
        for n in (21, 22, 23)
    ]
    assert client.post("/api/v1/interactions", json=views, headers=writer_headers).is_success
    assert client.get(f"{RECS}/products/{user}").json()["strategy"] == "personalized"
    assert client.get(f"{RECS}/session/sess_c_fresh").json()["strategy"] == "session"
    set_consent(client, admin_headers, user, False)
    # Served as a stranger is: global popularity through the same policy, not their events.
    stranger = client.get(f"{RECS}/products/cust_c_stranger?limit=10&exclude_seen=false").json()
    body = client.get(f"{RECS}/products/{user}?limit=10&exclude_seen=false").json()
    assert (stranger["strategy"], body["strategy"]) == ("popular", "popular")
    assert body["recommendations"] == stranger["recommendations"]
    # The session their events name is served popular too, not folded in.
    assert client.get(f"{RECS}/session/sess_c_fresh").json()["strategy"] == "popular"


def test_similar_products_for_a_customer_who_objects_are_popular(
    client, admin_headers, objecting
) -> None:
    anonymous = client.get(f"{RECS}/similar-products/prod_0003").json()
    assert anonymous["strategy"] == "similar"
    theirs = client.get(f"{RECS}/similar-products/prod_0003?user_id={objecting}").json()
    assert theirs["strategy"] == "popular" and theirs["recommendations"]
    assert "prod_0003" not in {item["id"] for item in theirs["recommendations"]}


def test_a_shared_session_is_not_folded_in_when_anyone_in_it_objects(
    client, admin_headers, writer_headers
) -> None:
    views = [
        {
            "user_id": user,
            "session_id": "sess_c_shared",
            "type": "product_view",
            "timestamp": now(),
            "data": {"productId": product, "viewDuration": 40},
        }
        for user, product in (("cust_c_a", "prod_0031"), ("cust_c_b", "prod_0032"))
    ]
    assert client.post("/api/v1/interactions", json=views, headers=writer_headers).is_success
    assert client.get(f"{RECS}/session/sess_c_shared").json()["strategy"] == "session"
    set_consent(client, admin_headers, "cust_c_b", False)
    assert client.get(f"{RECS}/session/sess_c_shared").json()["strategy"] == "popular"


def test_the_audit_record_keeps_what_was_shown_not_the_scores_or_reasons(
    client, admin_headers, objecting
) -> None:
    served = client.get(f"{RECS}/products/{objecting}?limit=5").json()
    deadline = time.monotonic() + 10
    while client.app.state.components.audit.buffered:
        assert time.monotonic() < deadline, "the audit trail did not write its buffer"
        time.sleep(0.05)
    record = client.get(
        f"/api/v1/audit/recommendations/{served['recommendation_id']}", headers=admin_headers
    ).json()
    assert record["user_id"] == objecting and record["strategy"] == "popular"
    assert [item["id"] for item in record["items"]] == [
        item["id"] for item in served["recommendations"]
    ]
    assert all(item["score"] is None and item["reason"] is None for item in record["items"])
    consenting = client.get(f"{RECS}/products/user_00251?limit=5").json()
    while client.app.state.components.audit.buffered:
        time.sleep(0.05)
    kept = client.get(
        f"/api/v1/audit/recommendations/{consenting['recommendation_id']}", headers=admin_headers
    ).json()
    assert all(item["score"] is not None and item["reason"] for item in kept["items"])


def test_consent_holds_in_every_experiment_arm(trained, admin_headers, tmp_path) -> None:
    settings = trained.model_copy(update={"experiments_file": tmp_path / "experiments.json"})
    experiment = {
        "id": "segment-popular",
        "salt": "consent",
        "arms": [{"name": "segment", "share": 1.0, "strategy": "popular"}],
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        user = "user_00252"
        assert client.get(f"{RECS}/products/{user}").json()["strategy"] == "personalized"
        set_consent(client, admin_headers, user, False)
        try:
            body = client.get(f"{RECS}/products/{user}?limit=10").json()
            assert body["strategy"] == "popular" and body.get("experiment") is None
            started = client.post(
                "/api/v1/admin/experiments", json=experiment, headers=admin_headers
            )
            assert started.status_code == 201, started.text
            # The arm serves its segment's popularity; not to a customer who objected.
            segment = client.get(f"{RECS}/products/{user}?limit=10&age_group=65%2B").json()
            assert segment["experiment"]["arm"] == "segment"
            assert segment["strategy"] == "popular"
            assert [i["id"] for i in segment["recommendations"]] == [
                i["id"] for i in body["recommendations"]
            ]
        finally:
            set_consent(client, admin_headers, user, True)
