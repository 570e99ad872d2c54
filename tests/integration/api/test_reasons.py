"""Every item's reason rests on something real, relevance reads the same on every strategy, and a
new customer's first steps get an answer of their own (issue 15, deliverables 3–5)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.catalog.local import read_catalog_file, write_catalog_file
from finverse_reco.index.foldin import fold_in_parts, item_row_from_features
from finverse_reco.model.artifacts import load_current
from finverse_reco.products import Product
from finverse_reco.service.reason_texts import TEMPLATES

from .conftest import WRITER_KEY

WRITER = {"X-API-Key": WRITER_KEY}

BASE = "/api/v1/recommendations"
CODES_BY_STRATEGY = {
    "personalized": {"similar_to_interacted", "interacted"},
    "session": {"session_product"},
    "features_cold_start": {"demographic", "popular"},
    "popular": {"popular_in_segment", "popular"},
    "similar": {"shared_features", "similar_interest"},
}


@pytest.fixture(scope="module")
def world(trained):
    index = load_current(trained.model_dir)
    catalog = {product.id: product for product in read_catalog_file(trained.catalog_path)}
    features = set(index.user_feature_names) | set(index.item_feature_names)
    return index, catalog, features


def assert_true_reasons(body: dict, world) -> None:
    """Every evidence names a real product (by its catalog name), a feature of the model or the
    fallback; the code fits the strategy and the text is its template filled with the evidence."""
    _, catalog, features = world
    strategy = body["strategy"]
    for item in body["recommendations"]:
        reason = item["reason"]
        assert reason["code"] in CODES_BY_STRATEGY[strategy], (strategy, reason)
        assert reason["evidence"], reason
        for evidence in reason["evidence"]:
            if evidence["type"] == "product":
                assert evidence["id"] in catalog, evidence
                assert evidence["label"] == catalog[evidence["id"]].name
                assert evidence["label"] in reason["text"]
            elif evidence["type"] == "feature":
                assert evidence["id"] in features, evidence
                assert evidence["label"] in reason["text"]
            else:
                assert evidence == {
                    "type": "fallback",
                    "id": "popularity",
                    "label": "popular with customers",
                    "value": None,
                }
                assert reason["text"] == TEMPLATES["popular"]


def assert_readable_relevance(body: dict) -> None:
    items = body["recommendations"]
    relevance = [item["relevanceScore"] for item in items]
    assert all(0.0 <= value <= 1.0 for value in relevance), relevance
    assert relevance == sorted(relevance, reverse=True)
    raw = [item["score"] for item in items]
    assert raw == sorted(raw, reverse=True)


def test_every_item_of_every_demo_users_list_has_a_true_reason(client, world):
    index, _, _ = world
    codes: dict[str, int] = {}
    for user_id in index.users:
        body = client.get(f"{BASE}/products/{user_id}").json()
        assert body["strategy"] == "personalized"
        assert len(body["recommendations"]) == 10
        assert_true_reasons(body, world)
        assert_readable_relevance(body)
        for item in body["recommendations"]:
            codes[item["reason"]["code"]] = codes.get(item["reason"]["code"], 0) + 1
    assert codes == {"similar_to_interacted": 10 * index.n_users}


def test_a_trained_customers_evidence_is_the_touched_product_most_like_the_item(client, world):
    index, catalog, _ = world
    user_id = index.users.id(3)
    seen = index.seen_rows(3)
    for item in client.get(f"{BASE}/products/{user_id}?limit=5").json()["recommendations"]:
        (evidence,) = item["reason"]["evidence"]
        similarity = index.cosines(np.array([index.items.row(item["id"])]), seen)[0]
        assert evidence["id"] == index.items.id(int(seen[similarity.argmax()]))
        assert evidence["value"] == pytest.approx(float(similarity.max()), abs=1e-6)
        assert item["reason"]["text"] == (
            f"Similar to {catalog[evidence['id']].name}, which you showed interest in"
        )
    # Asked to include what they touched, a touched product is its own reason.
    with_seen = client.get(f"{BASE}/products/{user_id}?limit=100&exclude_seen=false").json()
    touched = {index.items.id(int(row)) for row in seen}
    assert any(item["id"] in touched for item in with_seen["recommendations"])
    assert_true_reasons(with_seen, world)


def test_a_new_customer_known_by_age_hears_which_demographic_carried_the_item(client, world):
    body = client.get(f"{BASE}/products/newcomer_1?age_group=25-34&limit=20").json()
    assert body["strategy"] == "features_cold_start"
    assert_true_reasons(body, world)
    assert_readable_relevance(body)
    demographic = [i for i in body["recommendations"] if i["reason"]["code"] == "demographic"]
    assert demographic
    for item in demographic:
        (evidence,) = item["reason"]["evidence"]
        assert evidence["id"] == "age_group:25-34" and evidence["value"] > 0
        assert item["reason"]["text"] == "Popular with customers aged 25–34"


def test_popular_lists_name_the_segment_or_the_fallback(client, world):
    overall = client.get(f"{BASE}/products/someone_unknown?limit=15").json()
    assert overall["strategy"] == "popular"
    assert_true_reasons(overall, world)
    assert_readable_relevance(overall)
    assert {item["reason"]["code"] for item in overall["recommendations"]} == {"popular"}
    # Relevance is the share of the best popularity of all items: 1.0 for the most popular
    # product, which the policy may withhold from a customer it knows nothing of (fail closed).
    index, _, _ = world
    _, (best,) = index.popular(1).of(0)
    for item in overall["recommendations"]:
        assert item["relevanceScore"] == pytest.approx(item["score"] / float(best), abs=1e-6)


def test_a_session_names_the_product_of_the_session_behind_each_item(client, world):
    session = "sess_reasons_1"
    events = [
        {
            "user_id": "visitor_reasons",
            "session_id": session,
            "type": kind,
            "timestamp": f"2026-11-27T11:0{i}:00Z",
            "data": {"productId": product_id, "viewDuration": 30},
        }
        for i, (product_id, kind) in enumerate(
            [("prod_0010", "product_view"), ("prod_0020", "application_submit")]
        )
    ]
    assert client.post("/api/v1/interactions", json=events, headers=WRITER).status_code == 202
    body = client.get(f"{BASE}/session/{session}?limit=10").json()
    assert body["strategy"] == "session"
    assert_true_reasons(body, world)
    assert_readable_relevance(body)
    _, catalog, _ = world
    verbs = {"prod_0010": "viewed", "prod_0020": "applied for"}
    for item in body["recommendations"]:
        (evidence,) = item["reason"]["evidence"]
        assert evidence["id"] in verbs
        name = catalog[evidence["id"]].name
        assert item["reason"]["text"] == (
            f"Goes with {name}, which you {verbs[evidence['id']]} in this session"
        )


def test_similar_products_name_the_features_they_share(client, world):
    _, catalog, _ = world
    for product_id in ("prod_0001", "prod_0050", "prod_0150"):
        body = client.get(f"{BASE}/similar-products/{product_id}?limit=10").json()
        assert_true_reasons(body, world)
        assert_readable_relevance(body)
        anchor = catalog[product_id]
        for item in body["recommendations"]:
            product, *features = item["reason"]["evidence"]
            assert product["id"] == product_id
            for feature in features:  # each one really is shared
                group, _, value = feature["id"].partition(":")
                if group in {"category", "institution"}:
                    assert getattr(catalog[item["id"]], group) == getattr(anchor, group) == value


def test_relevance_is_monotone_and_in_range_on_every_strategy(client, world):
    bodies = [
        client.get(f"{BASE}/products/user_00004?limit=50").json(),
        client.get(f"{BASE}/products/nobody_yet?limit=50").json(),
        client.get(f"{BASE}/products/nobody_yet?limit=50&income_range=50k-75k").json(),
        client.get(f"{BASE}/similar-products/prod_0007?limit=50").json(),
        client.get(f"{BASE}/session/sess_reasons_1?limit=50").json(),
        client.get(f"{BASE}/session/sess_with_nothing?limit=50").json(),
    ]
    assert {body["strategy"] for body in bodies} == set(CODES_BY_STRATEGY)
    for body in bodies:
        assert_readable_relevance(body)
        assert len(body["recommendations"]) == 50


@pytest.mark.parametrize(
    ("parameter", "value", "allowed"),
    [("age_group", "banana", "25-34"), ("income_range", "lots", "50k-75k")],
)
def test_unknown_demographic_values_answer_422_with_the_allowed_values(
    client, parameter, value, allowed
):
    response = client.get(f"{BASE}/products/someone_new?{parameter}={value}")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert f"{parameter}={value!r}" in error["message"]
    (detail,) = error["details"]
    assert detail["loc"] == ["query", parameter]
    assert allowed in detail["allowed"]
    assert detail["allowed"] == sorted(detail["allowed"])


@pytest.fixture(scope="module")
def with_a_new_product(trained, tmp_path_factory):
    """The same model and store, with a catalog that has a card the model never saw."""
    products = read_catalog_file(trained.catalog_path)
    card = next(p for p in products if p.category == "credit_card")
    new = replace(card, id="prod_new_card", name="Brand New Rewards Card")
    folder = tmp_path_factory.mktemp("new-product")
    catalog_path = folder / "catalog.json"
    write_catalog_file(catalog_path, [*products, new])
    # No rules and no diversity caps: what is checked here is the fold-in's own ranking (the
    # policy's filters over it are tested in test_policy.py).
    rules = folder / "rules.toml"
    rules.write_text('version = "no-rules"\n')
    settings = trained.model_copy(update={"catalog_path": catalog_path, "policy_file": rules})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, new


def test_a_session_only_on_a_product_the_model_never_saw_gets_its_neighbours(
    with_a_new_product, world
):
    client, new = with_a_new_product
    index, _, _ = world
    assert index.items.row(new.id) is None
    session = "sess_new_product_only"
    event = {
        "user_id": "visitor_new_product",
        "session_id": session,
        "type": "product_view",
        "timestamp": "2026-11-27T12:00:00Z",
        "data": {"productId": new.id, "viewDuration": 60},
    }
    assert client.post("/api/v1/interactions", json=event, headers=WRITER).status_code == 202
    body = client.get(f"{BASE}/session/{session}?limit=10").json()
    assert body["strategy"] == "session" and body["degraded"] is False
    items = body["recommendations"]
    ids = [item["id"] for item in items]
    assert new.id not in ids
    # Ranked from the product's features, as a fold-in of its feature row ranks...
    vector = item_row_from_features(index, new)
    parts = fold_in_parts(index, {}, unseen_items=(vector[None, :], np.ones(1, np.float32)))
    expected = np.argsort(-(parts.query @ index.item_matrix.T), kind="stable")[:10]
    assert ids == index.items.ids_of(expected.tolist())
    # ...which are its neighbours, not the popular list.
    popular = client.get(f"{BASE}/products/someone_unknown?limit=10").json()["recommendations"]
    popular_ids = [item["id"] for item in popular]
    assert ids != popular_ids

    def closeness(product_ids: list[str]) -> float:
        rows = index.items.rows(product_ids)
        unit = index.item_matrix[rows, :-1] / np.linalg.norm(
            index.item_matrix[rows, :-1], axis=1, keepdims=True
        )
        return float((unit @ (vector[:-1] / np.linalg.norm(vector[:-1]))).mean())

    assert closeness(ids) > closeness(popular_ids) + 0.1
    assert_readable_relevance(body)
    for item in items:
        (evidence,) = item["reason"]["evidence"]
        assert evidence["id"] == new.id and evidence["label"] == new.name
        assert item["reason"]["text"] == (
            "Goes with Brand New Rewards Card, which you viewed in this session"
        )


def test_a_product_the_catalog_does_not_know_either_leaves_the_session_popular(client):
    session = "sess_unknown_product_only"
    event = {
        "user_id": "visitor_unknown_product",
        "session_id": session,
        "type": "product_view",
        "timestamp": "2026-11-27T12:00:00Z",
        "data": {"productId": "prod_nowhere", "viewDuration": 60},
    }
    # Trusted writes refuse a product the catalog does not know (FINVERSE_ACCEPT_UNKNOWN_PRODUCTS
    # off), so the session holds nothing to fold in.
    assert client.post("/api/v1/interactions", json=event, headers=WRITER).status_code == 422
    body = client.get(f"{BASE}/session/{session}").json()
    assert body["strategy"] == "popular"
    assert all(item["reason"]["code"] in {"popular"} for item in body["recommendations"])


def test_product_details_of_the_reasons_come_with_the_lists_own(client, world):
    """A reason names its evidence by the catalog's name even when that product is not listed."""
    _, catalog, _ = world
    body = client.get(f"{BASE}/products/user_00005?limit=3").json()
    listed = {item["id"] for item in body["recommendations"]}
    named = {
        evidence["id"]
        for item in body["recommendations"]
        for evidence in item["reason"]["evidence"]
        if evidence["type"] == "product"
    }
    assert named - listed  # touched products, not in the list (exclude_seen)
    assert all(Product.from_dict(catalog[pid].to_dict()).name for pid in named)


def _service_call(client: TestClient, method: str, *args, **kwargs):
    """A use case of the app's own service, run on the app's event loop."""
    service = client.app.state.components.service
    return client.portal.call(partial(getattr(service, method), *args, **kwargs))


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "kinds"),
    [
        ("for_user", ("user_00006", 10), {}, {"user_feature", "item_bias"}),
        ("for_user", ("fresh_face", 10), {"demographics": {"age_group": "35-44"}}, None),
        ("for_user", ("fresh_face", 10), {}, {"popularity"}),
        ("for_session", ("sess_reasons_1", 10), {}, {"item", "item_bias"}),
        ("similar_products", ("prod_0009", 10), {}, {"item_feature"}),
    ],
)
def test_explain_splits_each_raw_score_exactly(client, world, method, args, kwargs, kinds):
    """What `explain=true` shows: every part of every item's score, adding up to the score."""
    index, _, features = world
    result = _service_call(client, method, *args, explain=True, **kwargs)
    plain = _service_call(client, method, *args, **kwargs)
    assert plain.contributions is None
    assert result.product_ids == plain.product_ids and result.reasons == plain.reasons
    assert len(result.contributions) == len(result.product_ids)
    for score, parts in zip(result.scores, result.contributions, strict=True):
        assert sum(part.value for part in parts) == pytest.approx(score, rel=1e-5, abs=1e-5)
        sizes = [abs(part.value) for part in parts]
        assert sizes == sorted(sizes, reverse=True)
        for part in parts:
            if part.kind in {"user_feature", "item_feature"}:
                assert part.name in features
            elif part.kind == "item":
                assert part.name in index.items
        if kinds is not None:
            assert kinds <= {part.kind for part in parts}
