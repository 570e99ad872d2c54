"""CachedCatalog's in-process layer, in front of the embedded catalog (no Redis configured)."""

from __future__ import annotations

import asyncio

import pytest

from finverse_reco.catalog.cache import CachedCatalog
from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.products import Product

PRODUCTS = [Product(id=f"p{i}", name=f"P{i}", category="card", institution="b") for i in range(6)]


def cached(**options) -> CachedCatalog:
    options.setdefault("ttl_seconds", 60)
    return CachedCatalog(LocalCatalog(PRODUCTS), **options)


async def test_memory_hits_do_not_reach_the_inner_catalog():
    catalog = cached()
    await catalog.get_many(["p1", "p2"])

    found = await catalog.get_many(["p2", "p1"])

    assert list(found) == ["p2", "p1"]
    assert (catalog.inner_calls, catalog.memory_hits, catalog.misses) == (1, 2, 2)
    assert not catalog.redis_available


async def test_unknown_ids_are_remembered_as_absent():
    catalog = cached()
    assert await catalog.get_many(["ghost"]) == {}
    assert await catalog.get_many(["ghost"]) == {}
    assert catalog.inner_calls == 1


async def test_absence_is_forgotten_sooner_than_products():
    catalog = cached(ttl_seconds=60, absent_ttl_seconds=0.05)
    await catalog.get_many(["ghost", "p1"])
    await asyncio.sleep(0.08)

    await catalog.get_many(["ghost", "p1"])

    assert catalog.inner_calls == 2
    assert catalog.misses == 3  # the second call asked only for "ghost"


async def test_expired_products_are_fetched_again():
    catalog = cached(ttl_seconds=0.05)
    await catalog.get_many(["p1"])
    await asyncio.sleep(0.08)

    await catalog.get_many(["p1"])

    assert catalog.inner_calls == 2


async def test_the_memory_layer_is_bounded():
    catalog = cached(max_entries=2)
    await catalog.get_many(["p0", "p1", "p2", "p3"])

    await catalog.get_many(["p0", "p1", "p2", "p3"])

    assert catalog.inner_calls == 2  # four products do not fit in two entries


async def test_all_products_comes_from_the_inner_catalog():
    assert await cached().all_products() == PRODUCTS


@pytest.mark.parametrize(
    "options",
    [{"ttl_seconds": 0}, {"max_entries": 0}, {"absent_ttl_seconds": -1}, {"redis_timeout_ms": 0}],
)
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError):
        cached(**options)
