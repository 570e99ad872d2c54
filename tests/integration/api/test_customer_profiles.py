"""`PUT`/`GET /api/v1/customers/{user_id}/profile`: admin only, validated, nothing stored on 422."""

from __future__ import annotations

import pytest

PROFILE = {
    "birth_year": 1990,
    "annual_income": 58000,
    "income_range": "50k-75k",
    "residency": "US",
    "region": "midwest",
    "risk_profile": 3,
    "kyc_status": "verified",
    "holdings": ["prod_0012", "prod_0012", "prod_0013"],
    "personalisation_consent": True,
    "updated_at": "2026-11-27T12:00:00Z",
}


def url(user_id: str) -> str:
    return f"/api/v1/customers/{user_id}/profile"


def test_put_then_get_returns_the_profile(client, admin_headers) -> None:
    put = client.put(url("cust_put_1"), json=PROFILE, headers=admin_headers)
    assert put.status_code == 200, put.text
    got = client.get(url("cust_put_1"), headers=admin_headers)
    assert got.status_code == 200
    assert got.json() == {
        **PROFILE,
        "user_id": "cust_put_1",
        "annual_income": 58000.0,
        "holdings": ["prod_0012", "prod_0013"],
        "updated_at": "2026-11-27T12:00:00Z",
    }


def test_profiles_need_the_admin_key(client) -> None:
    assert client.put(url("cust_key"), json=PROFILE).status_code == 401
    assert client.get(url("cust_key")).status_code == 401


def test_an_unknown_customer_is_404(client, admin_headers) -> None:
    response = client.get(url("nobody_here"), headers=admin_headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"risk_profile": 6}, "risk_profile"),
        ({"risk_profile": "high"}, "risk_profile"),
        ({"birth_year": 1700}, "birth_year"),
        ({"annual_income": -1}, "annual_income"),
        ({"residency": "United States"}, "residency"),
        ({"kyc_status": "maybe"}, "kyc_status"),
        ({"holdings": ["not an id!"]}, "holdings"),
        ({"holdings": "prod_0001"}, "holdings"),
        ({"favourite_colour": "blue"}, "favourite_colour"),
        ({"user_id": "someone_else"}, "user_id"),
        ({"updated_at": "2999-01-01T00:00:00Z"}, "future"),
        ({"personalisation_consent": "perhaps"}, "personalisation_consent"),
    ],
)
def test_bad_bodies_are_422_and_nothing_is_stored(client, admin_headers, change, words) -> None:
    user = "cust_bad_" + next(iter(change))
    response = client.put(url(user), json={**PROFILE, **change}, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]
    assert client.get(url(user), headers=admin_headers).status_code == 404


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b"\xff\xfe"])
def test_bodies_that_are_no_profile_are_4xx_json(client, admin_headers, raw) -> None:
    response = client.put(
        url("cust_raw"), content=raw, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert "error" in response.json()
    assert client.get(url("cust_raw"), headers=admin_headers).status_code == 404


def test_an_older_profile_is_refused_and_the_newer_kept(client, admin_headers) -> None:
    client.put(url("cust_old"), json=PROFILE, headers=admin_headers)
    older = {**PROFILE, "risk_profile": 5, "updated_at": "2026-11-01T00:00:00Z"}
    response = client.put(url("cust_old"), json=older, headers=admin_headers)
    assert response.status_code == 409
    assert client.get(url("cust_old"), headers=admin_headers).json()["risk_profile"] == 3


def test_the_demo_world_seeds_a_profile_per_user(client, admin_headers) -> None:
    profile = client.get(url("user_00001"), headers=admin_headers).json()
    assert profile["residency"] == "US" and profile["kyc_status"] in {"verified", "pending", "none"}
    assert 1900 < profile["birth_year"] < 2010
