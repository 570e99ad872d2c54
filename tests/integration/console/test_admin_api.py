"""The admin API and the console's sessions, in-process over a private copy of the trained world:
who may call what (key, session cookie, CSRF token), what each endpoint answers, and the pages'
security headers."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import aio_pika
import pytest
from fastapi.testclient import TestClient

from finverse_reco import compose
from finverse_reco.api.app import create_app
from finverse_reco.api.schemas import (
    ActivationOut,
    CustomerEventsOut,
    EvaluationReportOut,
    ModelVersionsOut,
    OverviewOut,
    ProductSearchOut,
)
from finverse_reco.api.sessions import COOKIE_NAME, CSRF_HEADER
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.cli import train_once
from finverse_reco.ingest import InteractionPublisher, Topology
from finverse_reco.ingest.topology import delete_topology
from finverse_reco.model.artifacts import ARRAYS_FILE, VERSIONS_DIR, current_version

from .conftest import ADMIN, API_KEY

ADMIN_OPERATIONS = [
    ("GET", "/api/v1/admin/overview"),
    ("GET", "/api/v1/admin/models"),
    ("POST", "/api/v1/admin/models/20260101T000000Z-abcdef/activate"),
    ("GET", "/api/v1/admin/customers/user_00001/events"),
    ("PUT", "/api/v1/customers/user_00001/profile"),
    ("GET", "/api/v1/customers/user_00001/profile"),
    ("PUT", "/api/v1/customers/user_00001/consent"),
    ("GET", "/api/v1/admin/products"),
    ("GET", "/api/v1/admin/evaluations/latest"),
    ("POST", "/api/v1/recommendations/refresh-model"),
    ("GET", f"/api/v1/recommendations/refresh-model/{'0' * 32}"),
    ("GET", f"/api/v1/audit/recommendations/{'0' * 32}"),
    ("GET", "/api/v1/audit/customers/user_00001"),
    ("DELETE", "/api/v1/customers/user_00001"),
    ("GET", "/api/v1/admin/experiments"),
    ("POST", "/api/v1/admin/experiments"),
    ("POST", "/api/v1/admin/experiments/ranker-v2/stop"),
    ("GET", "/api/v1/stats/online"),
]
CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')


def log_in(client: TestClient) -> str:
    """Log the test client in through the form; the CSRF token of its session."""
    response = client.post("/console/login", data={"api_key": API_KEY}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/console")
    assert page.status_code == 200
    return CSRF_META.search(page.text)[1]


# --- who may call the admin API -------------------------------------------------------------------


def test_every_admin_operation_is_listed_here_and_documented(client):
    schema = client.get("/openapi.json").json()
    secured = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if {"AdminKey": []} in operation.get("security", [])
    }
    listed = {
        (
            method,
            re.sub(r"/(20260101T000000Z-abcdef|user_00001|0{32}|ranker-v2)(?=/|$)", "/{}", path),
        )
        for method, path in ADMIN_OPERATIONS
    }
    assert {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p in secured} == listed
    for path in ("/api/v1/admin/overview", "/api/v1/recommendations/refresh-model"):
        operation = next(iter(schema["paths"][path].values()))
        assert operation["security"] == [
            {"AdminKey": []},
            {"ConsoleSession": [], "ConsoleCsrf": []},
        ]


@pytest.mark.parametrize(("method", "path"), ADMIN_OPERATIONS)
def test_without_key_or_session_an_admin_call_gets_401(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    wrong = client.request(method, path, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401


def test_a_session_cookie_counts_only_with_its_csrf_token(client):
    csrf = log_in(client)
    assert client.cookies.get(COOKIE_NAME)
    without = client.get("/api/v1/admin/overview")
    assert without.status_code == 403
    assert without.json()["error"]["code"] == "csrf_token_invalid"
    assert client.post("/api/v1/recommendations/refresh-model").status_code == 403
    wrong = client.get("/api/v1/admin/overview", headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 403
    assert client.get("/api/v1/admin/overview", headers={CSRF_HEADER: csrf}).status_code == 200
    # A key, when sent, decides alone: a wrong one is refused even beside a good session.
    assert (
        client.get(
            "/api/v1/admin/overview", headers={CSRF_HEADER: csrf, "X-API-Key": "guess"}
        ).status_code
        == 401
    )


def test_a_tampered_session_cookie_is_no_session(client):
    csrf = log_in(client)
    token = client.cookies[COOKIE_NAME]
    client.cookies.set(COOKIE_NAME, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert client.get("/api/v1/admin/overview", headers={CSRF_HEADER: csrf}).status_code == 401
    page = client.get("/console", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/console/login?notice=expired"


def test_a_session_from_one_replica_is_good_on_another(world):
    """No server-side state: a second app with the same settings accepts the first one's session."""
    with TestClient(create_app(world)) as first, TestClient(create_app(world)) as second:
        csrf = log_in(first)
        second.cookies.set(COOKIE_NAME, first.cookies[COOKIE_NAME])
        assert second.get("/api/v1/admin/overview", headers={CSRF_HEADER: csrf}).status_code == 200
        rotated = world.model_copy(update={"api_key": "a-new-admin-key"})
        with TestClient(create_app(rotated)) as after_rotation:
            after_rotation.cookies.set(COOKIE_NAME, first.cookies[COOKIE_NAME])
            response = after_rotation.get("/api/v1/admin/overview", headers={CSRF_HEADER: csrf})
            assert response.status_code == 401  # rotating the key ends every session


# --- login, logout, pages ---------------------------------------------------------------------------


def test_login_sets_a_strict_http_only_cookie_that_expires(client, world):
    response = client.post("/console/login", data={"api_key": API_KEY}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    assert f"Max-Age={world.console_session_minutes * 60}" in cookie
    assert "Secure" not in cookie  # development over plain HTTP


def test_in_production_the_cookie_is_https_only(world):
    production = world.model_copy(
        update={"environment": "production", "console_session_secret": "s" * 40}
    )
    with TestClient(create_app(production)) as client:
        response = client.post("/console/login", data={"api_key": API_KEY}, follow_redirects=False)
        assert "Secure" in response.headers["set-cookie"]


def test_a_wrong_key_gets_the_form_again_and_no_cookie(client):
    response = client.post("/console/login", data={"api_key": "guess"}, follow_redirects=False)
    assert response.status_code == 401
    assert "not the admin key" in response.text
    assert "set-cookie" not in response.headers
    assert client.post("/console/login", data={}, follow_redirects=False).status_code == 401


def test_a_login_posted_from_another_site_is_refused(client):
    response = client.post(
        "/console/login",
        data={"api_key": API_KEY},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers
    other_origin = client.post(
        "/console/login",
        data={"api_key": API_KEY},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_origin.status_code == 403


def test_logout_needs_the_csrf_token_and_then_deletes_the_cookie(client):
    csrf = log_in(client)
    forged = client.post("/console/logout", data={}, follow_redirects=False)
    assert forged.status_code == 403
    response = client.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?notice=logged_out"
    assert f'{COOKIE_NAME}=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/console", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "page",
    ["/console", "/console/models", "/console/customers", "/console/quality", "/console/products"],
)
def test_pages_need_a_session_and_carry_a_strict_policy(client, page):
    redirected = client.get(page, follow_redirects=False)
    assert redirected.status_code == 303 and redirected.headers["location"] == "/console/login"
    log_in(client)
    response = client.get(page)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text and " on" + "click=" not in response.text
    assert not re.search(r'(src|href)="(https?:)?//', response.text)  # nothing from elsewhere


def test_the_docs_page_loads_swagger_ui_from_this_service(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert "cdn" not in response.text and not re.search(r'(src|href)="(https?:)?//', response.text)
    assert "script-src 'self';" in response.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', response.text):
        served = client.get(asset)
        assert served.status_code == 200, asset
    assert client.get("/redoc").status_code == 404


def test_failed_authentications_are_rate_limited_and_good_ones_are_not(world):
    limited = world.model_copy(update={"admin_rate_limit": "3/minute"})
    app = create_app(limited)
    with TestClient(app, client=("192.0.2.20", 5000)) as client:
        for _ in range(20):
            assert client.get("/api/v1/admin/overview", headers=ADMIN).status_code == 200
        for _ in range(3):
            assert client.get("/api/v1/admin/models").status_code == 401
        refused = client.get("/api/v1/admin/models", headers=ADMIN)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert client.post("/console/login", data={"api_key": API_KEY}).status_code == 429
        other = TestClient(app, client=("192.0.2.21", 5000))
        assert other.get("/api/v1/admin/models", headers=ADMIN).status_code == 200


# --- what the admin endpoints answer --------------------------------------------------------------


def test_the_overview_follows_the_traffic(client, world):
    for n in range(1, 21):
        client.get(f"/api/v1/recommendations/products/user_{n:05d}")
    response = client.get("/api/v1/admin/overview", headers=ADMIN)
    assert response.status_code == 200
    overview = OverviewOut.model_validate(response.json()).model_dump()
    assert overview["ready"] and overview["checks"]["store"] == "ok"
    assert overview["model"]["version"] == current_version(world.model_dir)
    assert 0 <= overview["model"]["age_seconds"] < 3600
    (users,) = [e for e in overview["endpoints"] if e["route"].endswith("/products/{user_id}")]
    assert users["requests"] == 20 and users["server_errors"] == 0
    assert users["per_second"] > 0 and 0 < users["p99_seconds"] <= 2.5
    recommendations = overview["recommendations"]
    assert recommendations["degraded_share"] == 0
    assert sum(recommendations["by_strategy"].values()) == 20
    assert overview["dead_letter_queues"]["available"] is False  # no broker in this world
    assert overview["banking_service"] == {"configured": False, "breaker": None}
    assert overview["refresh_job"] is None


def test_models_list_every_version_and_activate_rolls_back(client, world):
    first = current_version(world.model_dir)
    assert asyncio.run(train_once(world)) == 0
    second = current_version(world.model_dir)
    listed = ModelVersionsOut.model_validate(
        client.get("/api/v1/admin/models", headers=ADMIN).json()
    )
    assert [v.version for v in listed.versions] == [second, first]
    assert listed.active == second and listed.versions[0].active
    newest = listed.versions[0]
    assert newest.shape["users"] == 300 and newest.counts["documents"] > 0
    assert 0 <= newest.metrics["validation_precision@10"] <= 1
    assert newest.guardrail.activated is True and "precision" in newest.guardrail.reason
    assert newest.parameters["model"]["no_components"] == world.model_components
    assert newest.bytes_on_disk > 10_000 and newest.error is None

    response = client.post(f"/api/v1/admin/models/{first}/activate", headers=ADMIN)
    assert response.status_code == 200, response.text
    activation = ActivationOut.model_validate(response.json())
    assert (activation.active, activation.previous, activation.serving) == (first, second, first)
    assert current_version(world.model_dir) == first
    assert client.get("/ready").json()["model_version"] == first  # swapped here at once


def test_activation_refuses_unknown_malformed_and_corrupt_versions(client, world):
    active = current_version(world.model_dir)
    unknown = client.post("/api/v1/admin/models/20200101T000000Z-abc123/activate", headers=ADMIN)
    assert unknown.status_code == 404
    malformed = client.post("/api/v1/admin/models/..%2F..%2Fetc/activate", headers=ADMIN)
    assert malformed.status_code in (404, 422)
    assert client.post("/api/v1/admin/models/CURRENT/activate", headers=ADMIN).status_code == 422
    assert asyncio.run(train_once(world)) == 0
    newest = current_version(world.model_dir)
    client.post(f"/api/v1/admin/models/{active}/activate", headers=ADMIN)
    arrays = world.model_dir / VERSIONS_DIR / newest / ARRAYS_FILE
    arrays.write_bytes(arrays.read_bytes()[:-100])
    corrupt = client.post(f"/api/v1/admin/models/{newest}/activate", headers=ADMIN)
    assert corrupt.status_code == 409 and "refused" in corrupt.json()["error"]["message"]
    assert current_version(world.model_dir) == active
    broken = ModelVersionsOut.model_validate(
        client.get("/api/v1/admin/models", headers=ADMIN).json()
    )
    assert {v.version for v in broken.versions} == {active, newest}


def test_a_customers_events_newest_first(client):
    response = client.get("/api/v1/admin/customers/user_00001/events?limit=5", headers=ADMIN)
    assert response.status_code == 200
    body = CustomerEventsOut.model_validate(response.json())
    stamps = [event.timestamp for event in body.events]
    assert len(stamps) == 5 and stamps == sorted(stamps, reverse=True)
    assert {event.user_id for event in body.events} == {"user_00001"}
    nobody = client.get("/api/v1/admin/customers/nobody_here/events", headers=ADMIN).json()
    assert nobody == {"user_id": "nobody_here", "events": []}
    assert client.get("/api/v1/admin/customers/bad id/events", headers=ADMIN).status_code == 422
    assert (
        client.get("/api/v1/admin/customers/user_00001/events?limit=0", headers=ADMIN).status_code
        == 422
    )


def test_catalog_search(client, world):
    catalog = read_catalog_file(world.catalog_path)
    everything = ProductSearchOut.model_validate(
        client.get("/api/v1/admin/products?limit=200", headers=ADMIN).json()
    )
    assert everything.total == len(catalog) and len(everything.products) == len(catalog)
    one = client.get("/api/v1/admin/products?q=PROD_0001", headers=ADMIN).json()
    assert [p["id"] for p in one["products"]] == ["prod_0001"] and one["products"][0]["in_model"]
    category = catalog[0].category
    by_category = client.get(f"/api/v1/admin/products?q={category}&limit=200", headers=ADMIN)
    assert {p["category"] for p in by_category.json()["products"]} >= {category}
    assert client.get("/api/v1/admin/products?q=no-such-thing", headers=ADMIN).json() == {
        "total": 0,
        "products": [],
    }


def test_the_latest_evaluation_report(client, world):
    response = client.get("/api/v1/admin/evaluations/latest", headers=ADMIN)
    latest = EvaluationReportOut.model_validate(response.json())
    assert latest.file == "demo-holdout.json"
    assert [row["model"] for row in latest.report["results"]] == ["popularity", "lightfm-cf"]
    newer = world.evaluation_dir / "newer.json"
    newer.write_text('{"dataset": "x", "results": []}')
    assert (
        client.get("/api/v1/admin/evaluations/latest", headers=ADMIN).json()["file"] == "newer.json"
    )
    newer.write_text("{broken")
    time.sleep(0.01)
    assert (
        client.get("/api/v1/admin/evaluations/latest", headers=ADMIN).json()["file"]
        == "demo-holdout.json"
    )
    for path in world.evaluation_dir.iterdir():
        path.unlink()
    missing = client.get("/api/v1/admin/evaluations/latest", headers=ADMIN)
    assert missing.status_code == 404 and "finverse-reco evaluate --json" in missing.text


@pytest.mark.rabbitmq
def test_the_overview_shows_dead_letter_depths_and_reasons(world, rabbitmq_url):
    settings = world.model_copy(
        update={
            "rabbitmq_url": rabbitmq_url,
            "rabbitmq_name_prefix": f"c{uuid.uuid4().hex[:8]}.",
            "ingest_batch_timeout_ms": 50,
        }
    )
    config = compose.ingest_config(settings)
    try:
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 20
            while client.get("/ready").json()["checks"].get("broker") != "ok":
                assert time.monotonic() < deadline, "the embedded consumer did not connect"
                time.sleep(0.1)

            async def publish_bad() -> None:
                async with InteractionPublisher(config) as publisher:
                    await publisher.publish_body(b"{not json", "product_view.web", message_id="x")

            asyncio.run(publish_bad())
            while True:
                queues = client.get("/api/v1/admin/overview", headers=ADMIN).json()[
                    "dead_letter_queues"
                ]
                if queues["depths"].get("product_views") and queues["recent"]:
                    break
                assert time.monotonic() < deadline, queues
                time.sleep(0.1)
            assert queues["available"] and queues["depths"]["product_views"] == 1
            assert set(queues["depths"]) >= {"product_views", "interactions", "unrouted"}
            (letter,) = queues["recent"]
            assert letter["queue"] == "product_views" and "JSON" in letter["reason"]
    finally:

        async def cleanup() -> None:
            connection = await aio_pika.connect(rabbitmq_url)
            async with connection:
                await delete_topology(await connection.channel(), Topology.of(config))

        asyncio.run(cleanup())
