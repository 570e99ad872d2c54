"""BankingServiceCatalog against services that break the contract (httpx.MockTransport plays them)."""

from __future__ import annotations

import httpx
import pytest

from finverse_reco.catalog.banking import MAX_BATCH_IDS, BankingServiceCatalog
from finverse_reco.catalog.base import CatalogUnavailable

GOOD_PRODUCT = {"id": "p1", "name": "P1", "category": "card", "institution": "bank"}


def catalog_answering(*responses: httpx.Response, **options) -> BankingServiceCatalog:
    """A catalog whose service answers `responses` in turn (the last one repeats)."""
    queue = list(responses)

    def answer(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    options.setdefault("backoff_ms", 1)
    return BankingServiceCatalog("http://banking.test", client=client, **options)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>proxy error</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"products": "p1"}),
        httpx.Response(200, json={"products": [{"id": "p1", "name": "no category"}]}),
    ],
)
async def test_an_answer_outside_the_contract_is_unavailable_and_not_retried(response):
    catalog = catalog_answering(response, max_retries=3)

    with pytest.raises(CatalogUnavailable):
        await catalog.get_many(["p1"])

    assert catalog.attempts == 1


async def test_broken_answers_count_towards_the_breaker():
    catalog = catalog_answering(httpx.Response(200, content=b"garbage"), breaker_failures=2)
    for _ in range(2):
        with pytest.raises(CatalogUnavailable):
            await catalog.get_many(["p1"])

    assert catalog.breaker_state == "opened"


async def test_too_many_requests_is_retried():
    catalog = catalog_answering(
        httpx.Response(429), httpx.Response(200, json={"products": [GOOD_PRODUCT]})
    )

    found = await catalog.get_many(["p1"])

    assert list(found) == ["p1"]
    assert catalog.attempts == 2


async def test_products_that_were_not_asked_for_are_dropped():
    other = {**GOOD_PRODUCT, "id": "p2"}
    catalog = catalog_answering(httpx.Response(200, json={"products": [GOOD_PRODUCT, other]}))

    assert list(await catalog.get_many(["p1"])) == ["p1"]


async def test_a_listing_that_pages_backwards_is_refused():
    page = {"products": [GOOD_PRODUCT], "next_offset": 0}
    catalog = catalog_answering(httpx.Response(200, json=page))

    with pytest.raises(CatalogUnavailable, match="backwards"):
        await catalog.all_products()


async def test_more_ids_than_one_batch_allows_is_a_caller_error():
    catalog = catalog_answering(httpx.Response(200, json={"products": []}))

    with pytest.raises(ValueError, match=str(MAX_BATCH_IDS)):
        await catalog.get_many([f"p{i}" for i in range(MAX_BATCH_IDS + 1)])
    assert catalog.attempts == 0


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("banking:8080", {}),
        ("ftp://banking", {}),
        ("http://banking", {"timeout_ms": 0}),
        ("http://banking", {"budget_ms": -5}),
        ("http://banking", {"max_retries": -1}),
        ("http://banking", {"breaker_failures": 0}),
        ("http://banking", {"page_size": MAX_BATCH_IDS + 1}),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(url, options):
    with pytest.raises(ValueError):
        BankingServiceCatalog(url, **options)
