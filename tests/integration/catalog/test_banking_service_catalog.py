"""BankingServiceCatalog against the stub over real HTTP: batching, retries, budget, breaker."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from finverse_reco.catalog.banking import BankingServiceCatalog
from finverse_reco.catalog.base import CatalogUnavailable, ProductCatalog
from finverse_reco.demo.banking_stub import BankingStubServer, create_banking_stub

from .conftest import make_products


async def test_get_many_is_one_batch_call_and_leaves_out_unknown_ids(make_banking, stub, products):
    catalog = make_banking()
    assert isinstance(catalog, ProductCatalog)
    wanted = [products[3].id, products[7].id, "no-such-product", products[3].id]

    found = await catalog.get_many(wanted)

    assert found == {products[3].id: products[3], products[7].id: products[7]}
    stats = stub.stats()
    assert stats["batch_calls"] == 1
    assert stats["ids_requested"] == 3  # duplicates are sent once


async def test_empty_request_makes_no_call(make_banking, stub):
    assert await make_banking().get_many([]) == {}
    assert stub.stats()["batch_calls"] == 0


async def test_all_products_walks_every_page(make_banking, stub, products):
    catalog = make_banking(page_size=15)

    everything = await catalog.all_products()

    assert everything == products
    assert stub.stats()["list_calls"] == 3  # 15 + 15 + 10


async def test_transient_failures_are_retried_within_one_get_many(make_banking, stub, products):
    stub.faults(fail_next=2)
    catalog = make_banking(max_retries=2)

    found = await catalog.get_many([products[0].id])

    assert found == {products[0].id: products[0]}
    assert stub.stats()["batch_calls"] == 3
    assert catalog.attempts == 3


async def test_retries_are_bounded(make_banking, stub, products):
    stub.faults(failure_rate=1.0)
    catalog = make_banking(max_retries=1, breaker_failures=100)

    with pytest.raises(CatalogUnavailable, match="503"):
        await catalog.get_many([products[0].id])

    assert stub.stats()["batch_calls"] == 2


async def test_a_slow_service_costs_at_most_the_budget(make_banking, stub, products):
    stub.faults(latency_ms=2000)
    catalog = make_banking(timeout_ms=100, budget_ms=250, max_retries=5, breaker_failures=100)

    started = time.perf_counter()
    with pytest.raises(CatalogUnavailable):
        await catalog.get_many([products[0].id])
    elapsed = time.perf_counter() - started

    assert 0.1 <= elapsed < 0.4
    # 100 ms per attempt inside a 250 ms budget leaves room for two attempts, not six.
    assert catalog.attempts <= 3


async def test_a_latency_spike_is_absorbed_by_a_retry(make_banking, stub, products):
    stub.faults(latency_spike_ms=400, spike_rate=1.0)
    catalog = make_banking(timeout_ms=150, budget_ms=800, max_retries=1, breaker_failures=100)
    with pytest.raises(CatalogUnavailable):
        await catalog.get_many([products[0].id])  # every call spikes past the timeout

    stub.faults(latency_spike_ms=400, spike_rate=0.0)
    assert await catalog.get_many([products[0].id]) == {products[0].id: products[0]}


async def test_calls_saved_by_their_retries_do_not_open_the_breaker(make_banking, stub, products):
    catalog = make_banking(max_retries=2, breaker_failures=2)

    for _ in range(4):
        stub.faults(fail_next=2)  # every call fails twice, then succeeds on its last attempt
        assert await catalog.get_many([products[0].id]) == {products[0].id: products[0]}

    assert catalog.attempts == 12
    assert catalog.breaker_state == "closed"


async def test_breaker_opens_after_the_configured_failures_then_fails_fast(
    make_banking, stub, products
):
    stub.faults(failure_rate=1.0)
    catalog = make_banking(max_retries=0, breaker_failures=3, breaker_reset_seconds=30)

    for _ in range(3):
        with pytest.raises(CatalogUnavailable, match="503"):
            await catalog.get_many([products[0].id])
    assert catalog.breaker_state == "opened"

    started = time.perf_counter()
    with pytest.raises(CatalogUnavailable, match="circuit is open"):
        await catalog.get_many([products[0].id])
    assert time.perf_counter() - started < 0.1  # no network, no retries
    assert stub.stats()["batch_calls"] == 3  # the open breaker sent nothing


async def test_breaker_half_opens_after_the_reset_time_and_closes_on_success(
    make_banking, stub, products
):
    stub.faults(failure_rate=1.0)
    catalog = make_banking(max_retries=0, breaker_failures=2, breaker_reset_seconds=0.3)
    for _ in range(2):
        with pytest.raises(CatalogUnavailable):
            await catalog.get_many([products[0].id])
    with pytest.raises(CatalogUnavailable, match="circuit is open"):
        await catalog.get_many([products[0].id])

    stub.faults()  # the service recovers
    await asyncio.sleep(0.35)

    assert await catalog.get_many([products[0].id]) == {products[0].id: products[0]}
    assert catalog.breaker_state == "closed"
    assert stub.stats()["batch_calls"] == 3


async def test_a_failed_trial_call_reopens_the_breaker_at_once(make_banking, stub, products):
    stub.faults(failure_rate=1.0)
    catalog = make_banking(max_retries=0, breaker_failures=3, breaker_reset_seconds=0.3)
    for _ in range(3):
        with pytest.raises(CatalogUnavailable):
            await catalog.get_many([products[0].id])
    await asyncio.sleep(0.35)

    with pytest.raises(CatalogUnavailable, match="503"):
        await catalog.get_many([products[0].id])  # the half-open trial, still failing
    with pytest.raises(CatalogUnavailable, match="circuit is open"):
        await catalog.get_many([products[0].id])

    assert catalog.breaker_state == "opened"
    assert stub.stats()["batch_calls"] == 4


async def test_client_errors_are_neither_retried_nor_counted_by_the_breaker(make_banking, stub):
    catalog = make_banking(base_url=stub.url + "/wrong-prefix", max_retries=3, breaker_failures=2)

    for _ in range(4):
        with pytest.raises(CatalogUnavailable, match="404"):
            await catalog.get_many(["prod-001"])

    assert catalog.attempts == 4
    assert catalog.breaker_state == "closed"


async def test_a_stopped_service_fails_fast_and_then_opens_the_breaker(make_banking):
    server = BankingStubServer(create_banking_stub(make_products(3))).start()
    catalog = make_banking(base_url=server.url, max_retries=1, breaker_failures=3)
    assert await catalog.get_many(["prod-000"]) != {}
    server.stop()

    started = time.perf_counter()
    for _ in range(3):
        with pytest.raises(CatalogUnavailable, match="ConnectError"):
            await catalog.get_many(["prod-000"])
    assert time.perf_counter() - started < 0.8  # refused connections, not timeouts
    assert catalog.attempts == 1 + 3 * 2
    with pytest.raises(CatalogUnavailable, match="circuit is open"):
        await catalog.get_many(["prod-000"])


async def test_concurrent_requests_share_the_connection_pool(make_banking, stub, products):
    catalog = make_banking(max_connections=4)

    results = await asyncio.gather(*(catalog.get_many([p.id]) for p in products))

    assert [next(iter(r.values())) for r in results] == products
    assert stub.stats()["batch_calls"] == len(products)


async def test_an_injected_client_is_used_and_left_open(stub, products):
    async with httpx.AsyncClient() as client:
        catalog = BankingServiceCatalog(stub.url, client=client)
        assert await catalog.get_many([products[1].id]) == {products[1].id: products[1]}
        await catalog.close()
        assert not client.is_closed
