from __future__ import annotations

import sqlite3

import pytest

FIELDS = {"id", "name", "category", "institution", "relevanceScore", "score", "rank", "reason"}
TOP = {"recommendations", "timestamp", "model_version", "strategy", "degraded"}


def assert_well_formed(body: dict, limit: int) -> list[dict]:
    assert body.keys() >= TOP
    recs = body["recommendations"]
    assert len(recs) == limit
    assert [r["rank"] for r in recs] == list(range(1, limit + 1))
    assert len({r["id"] for r in recs}) == limit
    relevance = [r["relevanceScore"] for r in recs]
    assert relevance == sorted(relevance, reverse=True)
    assert all(0.0 <= value <= 1.0 for value in relevance)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    for rec in recs:
        assert rec.keys() == FIELDS
        assert rec["reason"].keys() == {"code", "text", "evidence"}
        assert rec["reason"]["text"] and rec["reason"]["evidence"]
    assert body["model_version"]
    return recs


def test_known_user_gets_personalised_products(client):
    response = client.get("/api/v1/recommendations/products/user_00001")
    assert response.status_code == 200
    body = response.json()
    assert_well_formed(body, 10)
    assert body["strategy"] == "personalized"
    assert body["user_id"] == "user_00001"
    assert body["degraded"] is False


def test_exclude_seen_removes_products_the_user_touched(client, trained):
    import asyncio

    from finverse_reco.store import open_store

    async def seen() -> set[str]:
        store = open_store(trained.store_url)
        await store.open()
        try:
            events = await store.user_interactions("user_00002", limit=1000)
        finally:
            await store.close()
        return {pid for e in events for pid in e.product_ids()}

    touched = asyncio.run(seen())
    assert touched
    recs = client.get("/api/v1/recommendations/products/user_00002?limit=50").json()
    assert not touched & {r["id"] for r in recs["recommendations"]}
    with_seen = client.get(
        "/api/v1/recommendations/products/user_00002?limit=50&exclude_seen=false"
    ).json()
    assert touched & {r["id"] for r in with_seen["recommendations"]}


def test_category_filter(client):
    any_rec = client.get("/api/v1/recommendations/products/user_00003").json()
    category = any_rec["recommendations"][0]["category"]
    body = client.get(f"/api/v1/recommendations/products/user_00003?category={category}&limit=5")
    assert body.status_code == 200
    assert {r["category"] for r in body.json()["recommendations"]} == {category}
    unknown = client.get("/api/v1/recommendations/products/user_00003?category=spaceships")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_unknown_user_gets_popular_products(client):
    body = client.get("/api/v1/recommendations/products/someone_new").json()
    assert_well_formed(body, 10)
    assert body["strategy"] == "popular"


def test_unknown_user_with_demographics_gets_feature_cold_start(client):
    body = client.get(
        "/api/v1/recommendations/products/someone_else?age_group=18-24&income_range=25k-50k"
    ).json()
    assert_well_formed(body, 10)
    assert body["strategy"] == "features_cold_start"


def test_similar_products_never_contain_the_product(client):
    response = client.get("/api/v1/recommendations/similar-products/prod_0001?limit=20")
    assert response.status_code == 200
    recs = assert_well_formed(response.json(), 20)
    assert "prod_0001" not in {r["id"] for r in recs}
    assert client.get("/api/v1/recommendations/similar-products/prod_9999").status_code == 404


def test_session_fold_in_from_posted_views(client, writer_headers):
    session = "sess_test_fold_in"
    viewed = ["prod_0003", "prod_0004", "prod_0005"]
    events = [
        {
            "user_id": "visitor_1",
            "session_id": session,
            "type": "product_view",
            "timestamp": f"2026-11-27T10:0{i}:00Z",
            "data": {"productId": pid, "viewDuration": 40},
        }
        for i, pid in enumerate(viewed)
    ]
    posted = client.post("/api/v1/interactions", json=events, headers=writer_headers)
    assert posted.status_code == 202, posted.text
    assert posted.json() == {"accepted": 3, "duplicates": 0}
    again = client.post("/api/v1/interactions", json=events, headers=writer_headers)
    assert again.json() == {"accepted": 0, "duplicates": 3}

    body = client.get(f"/api/v1/recommendations/session/{session}").json()
    recs = assert_well_formed(body, 10)
    assert body["strategy"] == "session"
    assert body["session_id"] == session
    assert not set(viewed) & {r["id"] for r in recs}


def test_empty_session_falls_back_to_popular(client):
    body = client.get("/api/v1/recommendations/session/sess_nobody").json()
    assert body["strategy"] == "popular"
    assert_well_formed(body, 10)


def test_refresh_model_needs_the_key_and_runs_one_job(client, admin_headers):
    assert client.post("/api/v1/recommendations/refresh-model").status_code == 401
    wrong = client.post("/api/v1/recommendations/refresh-model", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    first = client.post("/api/v1/recommendations/refresh-model", headers=admin_headers)
    assert first.status_code == 202
    second = client.post("/api/v1/recommendations/refresh-model", headers=admin_headers)
    assert second.json()["job_id"] == first.json()["job_id"]
    status = client.get(
        f"/api/v1/recommendations/refresh-model/{first.json()['job_id']}",
        headers=admin_headers,
    )
    assert status.status_code == 200
    assert status.json()["state"] in {"running", "succeeded"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/recommendations/products/has space", None),
        ("get", "/api/v1/recommendations/products/" + "u" * 500, None),
        ("get", "/api/v1/recommendations/products/user_00001?limit=0", None),
        ("get", "/api/v1/recommendations/products/user_00001?limit=1000", None),
        ("get", "/api/v1/recommendations/products/user_00001?limit=ten", None),
        ("get", "/api/v1/recommendations/session/bad%00id", None),
        ("get", "/api/v1/recommendations/similar-products/%3Cscript%3E", None),
        ("post", "/api/v1/interactions", b"{not json"),
        (
            "post",
            "/api/v1/interactions",
            b'{"user_id": "u1", "type": "teleport", "timestamp": "2026-01-01T00:00:00Z", "data": {"productId": "p1"}}',
        ),
        (
            "post",
            "/api/v1/interactions",
            b'{"type": "product_view", "timestamp": "2026-01-01T00:00:00Z", "data": {"productId": "p1"}}',
        ),
        (
            "post",
            "/api/v1/interactions",
            b'{"user_id": "u1", "type": "product_view", "timestamp": "yesterday", "data": {"productId": "p1"}}',
        ),
        (
            "post",
            "/api/v1/interactions",
            b'{"user_id": "u1", "type": "product_view", "timestamp": "2026-01-01T00:00:00Z", "data": {"productId": "p1", "viewDuration": -5}}',
        ),
        ("post", "/api/v1/interactions", b"[]"),
        ("post", "/api/v1/interactions", b'"a string"'),
        ("post", "/api/v1/interactions", "\udcff".encode("utf-8", "surrogatepass")),
    ],
)
def test_bad_input_gets_a_json_4xx(client, writer_headers, method, path, body):
    if method == "get":
        response = client.get(path)
    else:
        response = client.post(
            path, content=body, headers={"Content-Type": "application/json", **writer_headers}
        )
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_a_bad_event_in_a_batch_rejects_the_batch_with_its_position(client, writer_headers):
    good = {
        "user_id": "u1",
        "type": "product_view",
        "timestamp": "2026-11-01T00:00:00Z",
        "data": {"productId": "prod_0001"},
    }
    bad = {**good, "user_id": "has space"}
    response = client.post("/api/v1/interactions", json=[good, bad], headers=writer_headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["index"] == 1


def test_an_event_the_store_refuses_is_listed_and_the_others_are_stored(
    client, trained, writer_headers
):
    with sqlite3.connect(trained.store_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS refuse_one_customer BEFORE INSERT ON interactions"
            " WHEN NEW.user_id = 'refused_customer'"
            " BEGIN SELECT RAISE(ABORT, 'this customer is closed'); END"
        )
    good = {
        "event_id": "api-refusal-ok",
        "user_id": "accepted_customer",
        "type": "product_view",
        "timestamp": "2026-11-01T00:00:00Z",
        "data": {"productId": "prod_0001"},
    }
    refused = {**good, "event_id": "api-refusal-no", "user_id": "refused_customer"}

    response = client.post("/api/v1/interactions", json=[refused, good], headers=writer_headers)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "refused_by_store"
    assert [d["index"] for d in error["details"]] == [0]
    assert "this customer is closed" in error["details"][0]["reason"]
    resent = client.post("/api/v1/interactions", json=[good], headers=writer_headers)
    assert resent.json() == {"accepted": 0, "duplicates": 1}


def test_health_ready_metrics_cors(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True
    assert ready["checks"]["store"] == "ok"
    metrics = client.get("/metrics").text
    assert "finverse_http_request_seconds_bucket" in metrics
    assert 'finverse_recommendations_total{endpoint="user_id",strategy="personalized"}' in metrics
    preflight = client.options(
        "/api/v1/recommendations/products/user_00001",
        headers={
            "Origin": "https://app.finverse.example",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "https://app.finverse.example"
    evil = client.get(
        "/api/v1/recommendations/products/user_00001", headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in evil.headers


def test_the_schema_documents_every_parameter_the_endpoints_read(client):
    """The recommendation GETs parse their parameters by hand (api/parameters.py): the published
    schema must still list each one, typed, and a request that breaks it must get a 422."""
    paths = client.get("/openapi.json").json()["paths"]
    prefix = "/api/v1/recommendations"
    filters = {"limit", "category", "institution", "exclude", "only", "explain"}
    expected = {
        "/products/{user_id}": {
            "user_id", *filters, "channel", "exclude_seen", "age_group", "income_range",
            "location",
        },
        "/session/{session_id}": {"session_id", *filters, "channel"},
        "/similar-products/{product_id}": {"product_id", *filters, "user_id", "channel"},
    }  # fmt: skip
    for path, names in expected.items():
        parameters = {p["name"]: p for p in paths[prefix + path]["get"]["parameters"]}
        assert parameters.keys() == names
        assert parameters["limit"]["schema"] == {
            "type": "integer", "minimum": 1, "maximum": 100, "default": 10
        }  # fmt: skip
        assert all(p["schema"].get("type") for p in parameters.values()), "no null unions"
    response = client.get(f"{prefix}/products/user_00001?limit=101&location=%3Cscript%3E")
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["error"]["details"]] == [
        ["query", "limit"],
        ["query", "location"],
    ]
