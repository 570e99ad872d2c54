"""The Banking Service stub as an ASGI app: its contract, its faults and its counters."""

from __future__ import annotations

import time

import httpx
import pytest

from finverse_reco.catalog.banking import BATCH_PATH, LIST_PATH, MAX_BATCH_IDS
from finverse_reco.demo.banking_stub import StubFaults, create_banking_stub
from finverse_reco.products import Product

PRODUCTS = [
    Product(id=f"p{i}", name=f"P{i}", category="loan", institution="bank", term_months=12 * i)
    for i in range(1, 8)
]


def client_for(**options) -> httpx.AsyncClient:
    app = create_banking_stub(PRODUCTS, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stub")


async def test_batch_returns_known_products_and_lists_the_missing():
    async with client_for() as client:
        response = await client.post(BATCH_PATH, json={"ids": ["p2", "nope", "p5"]})
        stats = (await client.get("/stats")).json()

    assert response.status_code == 200
    body = response.json()
    assert [Product.from_dict(p) for p in body["products"]] == [PRODUCTS[1], PRODUCTS[4]]
    assert body["missing"] == ["nope"]
    assert stats["batch_calls"] == 1 and stats["ids_requested"] == 3


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "bad_request"),
        (b'{"ids": "p1"}', 422, "invalid_ids"),
        (b'{"ids": [1, 2]}', 422, "invalid_ids"),
        (b"[]", 422, "invalid_ids"),
    ],
)
async def test_batch_rejects_bad_requests_with_a_json_error(body, status, code):
    async with client_for() as client:
        response = await client.post(BATCH_PATH, content=body)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_batch_refuses_more_ids_than_the_contract_allows():
    async with client_for() as client:
        response = await client.post(BATCH_PATH, json={"ids": ["p1"] * (MAX_BATCH_IDS + 1)})

    assert response.status_code == 413


async def test_listing_pages_through_the_catalog():
    async with client_for() as client:
        first = (await client.get(LIST_PATH, params={"offset": 0, "limit": 4})).json()
        last = (await client.get(LIST_PATH, params={"offset": 4, "limit": 4})).json()
        bad = await client.get(LIST_PATH, params={"offset": -1, "limit": 4})

    assert [p["id"] for p in first["products"]] == ["p1", "p2", "p3", "p4"]
    assert (first["total"], first["next_offset"]) == (7, 4)
    assert [p["id"] for p in last["products"]] == ["p5", "p6", "p7"]
    assert last["next_offset"] is None
    assert bad.status_code == 400


async def test_single_product_lookup():
    async with client_for() as client:
        found = await client.get(LIST_PATH + "/p3")
        missing = await client.get(LIST_PATH + "/p99")

    assert Product.from_dict(found.json()) == PRODUCTS[2]
    assert missing.status_code == 404


async def test_fail_next_fails_exactly_that_many_calls():
    async with client_for() as client:
        await client.put("/faults", json={"fail_next": 2})
        statuses = [
            (await client.post(BATCH_PATH, json={"ids": ["p1"]})).status_code for _ in range(4)
        ]
        stats = (await client.get("/stats")).json()

    assert statuses == [503, 503, 200, 200]
    assert stats["failures_injected"] == 2 and stats["batch_calls"] == 4


async def test_the_failure_rate_is_reproducible_from_the_seed():
    async def pattern(seed: int) -> list[int]:
        async with client_for(failure_rate=0.5, seed=seed) as client:
            return [
                (await client.post(BATCH_PATH, json={"ids": ["p1"]})).status_code for _ in range(40)
            ]

    first, again = await pattern(3), await pattern(3)

    assert first == again
    assert 5 < first.count(503) < 35


async def test_latency_and_spikes_are_added():
    async with client_for(latency_ms=30, latency_spike_ms=60, spike_rate=1.0) as client:
        started = time.perf_counter()
        await client.post(BATCH_PATH, json={"ids": ["p1"]})
        elapsed = time.perf_counter() - started
        stats = (await client.get("/stats")).json()

    assert elapsed >= 0.09
    assert stats["spikes_injected"] == 1


async def test_stats_reset_and_bad_faults_are_refused():
    async with client_for() as client:
        await client.post(BATCH_PATH, json={"ids": ["p1"]})
        reset = (await client.delete("/stats")).json()
        refused = await client.put("/faults", json={"failure_rate": 2})
        unknown = await client.put("/faults", json={"explode": 1})
        current = (await client.get("/faults")).json()

    assert reset["batch_calls"] == 0
    assert refused.status_code == 422 and "failure_rate" in refused.json()["error"]["message"]
    assert unknown.status_code == 422
    assert current["failure_rate"] == 0


@pytest.mark.parametrize(
    "options", [{"latency_ms": -1}, {"spike_rate": 1.5}, {"failure_rate": -0.1}, {"fail_next": -2}]
)
def test_fault_settings_are_validated(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        StubFaults(**options)
