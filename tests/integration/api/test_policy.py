"""The policy step over the demo world, through HTTP: no demo user is served anything a rule
forbids, an application takes its product out of the very next list, withdrawn products are never
served, and `explain=true` (admin) says what was filtered and why."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from policy_reference import Known, violations  # tests/support

from finverse_reco.api.app import create_app
from finverse_reco.catalog.local import read_catalog_file, write_catalog_file
from finverse_reco.customers import CustomerProfile
from finverse_reco.policy import DEFAULT_RULES_FILE, load_rules

RULES = tomllib.loads(DEFAULT_RULES_FILE.read_text())
VERSION = load_rules().version
PRODUCTS = "/api/v1/recommendations/products/"


def known_of(client, admin_headers, user_id: str) -> Known:
    profile = client.get(f"/api/v1/customers/{user_id}/profile", headers=admin_headers)
    events = client.get(
        f"/api/v1/admin/customers/{user_id}/events?limit=200", headers=admin_headers
    ).json()["events"]
    applied = {e["data"]["productId"] for e in events if e["type"] == "application_submit"}
    demographics = next(
        (e["data"]["userDemographics"] for e in events if e["data"].get("userDemographics")), {}
    )
    return Known(
        CustomerProfile.model_validate(profile.json()) if profile.status_code == 200 else None,
        frozenset(applied),
        demographics.get("age_group"),
        demographics.get("income_range"),
        demographics.get("location"),
    )


def test_no_demo_user_is_served_what_a_rule_forbids(client, admin_headers, trained) -> None:
    catalog = {p.id: p for p in read_catalog_file(trained.catalog_path)}
    users = [f"user_{n:05d}" for n in range(1, 301)]  # every user of the 300-user world
    served = broken = 0
    for user_id in users:
        body = client.get(f"{PRODUCTS}{user_id}?limit=10").json()
        assert body["policy_version"] == VERSION
        known = known_of(client, admin_headers, user_id)
        now = datetime.now(UTC)
        for item in body["recommendations"]:
            served += 1
            found = violations(item["id"], catalog, RULES, known, now)
            broken += bool(found)
            assert not found, (user_id, item["id"], found)
        assert len(body["recommendations"]) == 10
    assert served == 3000 and broken == 0


def test_similar_products_for_a_customer_obey_their_rules(client, admin_headers, trained) -> None:
    catalog = {p.id: p for p in read_catalog_file(trained.catalog_path)}
    for n in range(1, 301, 15):
        user_id = f"user_{n:05d}"
        known = known_of(client, admin_headers, user_id)
        for product_id in ("prod_0001", "prod_0100"):
            body = client.get(
                f"/api/v1/recommendations/similar-products/{product_id}?user_id={user_id}"
            ).json()
            for item in body["recommendations"]:
                assert not violations(item["id"], catalog, RULES, known, datetime.now(UTC))


def test_an_applied_for_product_is_gone_from_the_very_next_response(client, writer_headers) -> None:
    user_id = "user_00010"
    before = client.get(f"{PRODUCTS}{user_id}?limit=3&exclude_seen=false").json()
    first = next(i for i in before["recommendations"] if i["category"] != "insurance")
    submit = {
        "user_id": user_id,
        "session_id": "sess_policy_apply",
        "type": "application_submit",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"productId": first["id"]},
    }
    posted = client.post("/api/v1/interactions", json=submit, headers=writer_headers)
    assert posted.status_code == 202
    for exclude_seen in ("true", "false"):
        after = client.get(f"{PRODUCTS}{user_id}?limit=3&exclude_seen={exclude_seen}").json()
        assert first["id"] not in [item["id"] for item in after["recommendations"]]
        assert len(after["recommendations"]) == 3


def test_withdrawn_products_are_never_served(trained, client, tmp_path) -> None:
    user_id = "user_00020"
    top = client.get(f"{PRODUCTS}{user_id}?limit=5").json()["recommendations"]
    gone = {item["id"] for item in top[:2]}
    products = [p for p in read_catalog_file(trained.catalog_path) if p.id not in gone]
    smaller = tmp_path / "catalog.json"
    write_catalog_file(smaller, products)
    settings = trained.model_copy(update={"catalog_path": smaller})
    with TestClient(create_app(settings), raise_server_exceptions=False) as other:
        after = other.get(f"{PRODUCTS}{user_id}?limit=5").json()["recommendations"]
        similar = other.get(f"/api/v1/recommendations/similar-products/{top[2]['id']}?limit=50")
    assert len(after) == 5 and not gone & {item["id"] for item in after}
    assert not gone & {item["id"] for item in similar.json()["recommendations"]}


def test_explain_is_for_admins_and_names_the_rules(client, admin_headers) -> None:
    url = f"{PRODUCTS}user_00003?limit=5&explain=true"
    assert client.get(url).status_code == 401
    body = client.get(url, headers=admin_headers).json()
    explained = body["explain"]
    assert explained["policy_version"] == body["policy_version"] == VERSION
    assert explained["customer"]["user_id"] == "user_00003"
    served = {item["id"] for item in body["recommendations"]}
    for entry in explained["filtered"]:
        assert entry["id"] not in served and entry["rules"]
    assert "explain" not in client.get(f"{PRODUCTS}user_00003?limit=5").json()


def test_caller_filters_narrow_the_list(client) -> None:
    body = client.get(f"{PRODUCTS}user_00004?limit=20&category=savings_account,insurance").json()
    assert {i["category"] for i in body["recommendations"]} <= {"savings_account", "insurance"}
    ids = [i["id"] for i in body["recommendations"]]
    narrowed = client.get(f"{PRODUCTS}user_00004?limit=20&only={','.join(ids[:3])}").json()
    assert [i["id"] for i in narrowed["recommendations"]] == ids[:3]
    excluded = client.get(f"{PRODUCTS}user_00004?limit=20&exclude={ids[0]}").json()
    assert ids[0] not in [i["id"] for i in excluded["recommendations"]]


def test_ready_shows_the_policy_version(client) -> None:
    assert client.get("/ready").json()["policy_version"] == VERSION


def test_the_shipped_contact_rules_hold_over_http_and_explain_lists_them(
    client, writer_headers, admin_headers
) -> None:
    """Three impressions posted over HTTP take a product out of the next list for the customer
    (the shipped 3-in-7-days rule), a dismissal takes one out of their similar products too, and
    `explain=true` names both rules."""
    user_id = "user_00030"
    first = client.get(f"{PRODUCTS}{user_id}?limit=5").json()
    shown = first["recommendations"][0]["id"]
    for n in range(3):
        impression = {
            "user_id": user_id,
            "type": "impression",
            "timestamp": datetime.now(UTC).isoformat(),
            "recommendation_id": f"{first['recommendation_id']}-{n}",
            "data": {"productIDs": [shown], "channel": "app_home"},
        }
        posted = client.post("/api/v1/interactions", json=impression, headers=writer_headers)
        assert posted.status_code == 202
    url = f"{PRODUCTS}{user_id}?limit=5&channel=app_home&explain=true"
    after = client.get(url, headers=admin_headers).json()
    assert shown not in [item["id"] for item in after["recommendations"]]
    assert len(after["recommendations"]) == 5
    assert shown in after["explain"]["excluded"]["contact_limit"]
    assert after["explain"]["customer"]["channel"] == "app_home"

    similar_url = f"/api/v1/recommendations/similar-products/prod_0001?user_id={user_id}"
    similar = client.get(f"{similar_url}&channel=email").json()["recommendations"]
    dismissed = next(item["id"] for item in similar if item["id"] != shown)
    dismiss = {
        "user_id": user_id,
        "type": "dismiss",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"productId": dismissed},
    }
    posted = client.post("/api/v1/interactions", json=dismiss, headers=writer_headers)
    assert posted.status_code == 202
    again = client.get(f"{similar_url}&channel=email&explain=true", headers=admin_headers).json()
    assert dismissed not in [item["id"] for item in again["recommendations"]]
    assert again["explain"]["excluded"]["dismissed"] == [dismissed]
