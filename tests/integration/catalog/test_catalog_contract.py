"""The ProductCatalog contract, run against every implementation (embedded, HTTP, cached)."""

from __future__ import annotations

import pytest

from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.catalog.cache import CachedCatalog
from finverse_reco.catalog.local import LocalCatalog


@pytest.fixture(params=["local", "banking", "cached-banking"])
async def catalog(request, products, make_banking):
    if request.param == "local":
        built: ProductCatalog = LocalCatalog(products)
    elif request.param == "banking":
        built = make_banking()
    else:
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
        built = CachedCatalog(
            make_banking(), ttl_seconds=60, redis_url=redis_url, key_prefix=prefix
        )
    yield built
    await built.close()


async def test_is_a_product_catalog(catalog):
    assert isinstance(catalog, ProductCatalog)


async def test_get_many_answers_known_ids_and_omits_unknown_ones(catalog, products):
    found = await catalog.get_many([products[5].id, "unknown-id", products[9].id])

    assert found == {products[5].id: products[5], products[9].id: products[9]}


async def test_get_many_of_nothing_is_empty(catalog):
    assert await catalog.get_many([]) == {}


async def test_repeated_ids_are_answered_once(catalog, products):
    assert await catalog.get_many([products[1].id] * 3) == {products[1].id: products[1]}


async def test_all_products_is_the_whole_catalog(catalog, products):
    assert sorted(await catalog.all_products(), key=lambda p: p.id) == products


async def test_at_hand_never_disagrees_with_get_many(catalog, products):
    wanted = [products[3].id, "unknown-id", products[7].id]

    fetched = await catalog.get_many(wanted)
    at_hand = catalog.at_hand(wanted)

    # None means "needs a fetch"; an answer must be exactly what get_many answered.
    assert at_hand is None or at_hand == fetched
