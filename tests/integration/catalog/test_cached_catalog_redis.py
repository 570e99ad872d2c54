"""CachedCatalog over the stub (real HTTP) with real Redis: hits avoid calls, Redis failures don't."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
import redis

from finverse_reco.catalog.base import CatalogUnavailable
from finverse_reco.catalog.cache import PRODUCT_CACHE_VERSION, CachedCatalog

from .conftest import free_port


@pytest.fixture
async def make_cached(make_banking):
    built: list[CachedCatalog] = []

    def build(**options: object) -> CachedCatalog:
        options.setdefault("ttl_seconds", 60)
        cached = CachedCatalog(make_banking(), **options)
        built.append(cached)
        return cached

    yield build
    for cached in built:
        await cached.close()


async def test_cache_hits_avoid_calls(make_cached, stub, products, redis_url, key_prefix):
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    ids = [p.id for p in products[:5]]

    first = await cached.get_many(ids)
    second = await cached.get_many(ids)

    assert first == second == {p.id: p for p in products[:5]}
    assert stub.stats()["batch_calls"] == 1
    assert (cached.misses, cached.memory_hits) == (5, 5)


async def test_at_hand_answers_from_memory_only_once_everything_is_there(
    make_cached, stub, products, redis_url, key_prefix
):
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    ids = [products[0].id, "unknown-id"]

    before = cached.at_hand(ids)
    fetched = await cached.get_many(ids)
    after = cached.at_hand(ids)

    assert before is None  # nothing cached yet: the caller must fetch
    assert after == fetched == {products[0].id: products[0]}  # "unknown-id" cached as absent
    assert stub.stats()["batch_calls"] == 1


async def test_one_batch_call_per_request_for_only_the_uncached_ids(
    make_cached, stub, products, redis_url, key_prefix
):
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    await cached.get_many([products[0].id, products[1].id])

    found = await cached.get_many([p.id for p in products[:6]])

    assert list(found) == [p.id for p in products[:6]]  # the caller's order
    stats = stub.stats()
    assert stats["batch_calls"] == 2
    assert stats["ids_requested"] == 2 + 4


async def test_a_second_replica_reads_what_the_first_cached_in_redis(
    make_cached, stub, products, redis_url, key_prefix
):
    first = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    second = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    ids = [p.id for p in products[10:14]] + ["no-such-product"]
    await first.get_many(ids)

    found = await second.get_many(ids)

    assert found == {p.id: p for p in products[10:14]}
    assert stub.stats()["batch_calls"] == 1
    assert second.redis_hits == 5  # the unknown id is remembered as absent too


async def test_keys_are_versioned_and_a_new_version_does_not_read_old_entries(
    make_cached, stub, products, redis_url, key_prefix
):
    v1 = make_cached(redis_url=redis_url, key_prefix=key_prefix, namespace_version=1)
    await v1.get_many([products[0].id])
    raw = redis.Redis.from_url(redis_url).get(f"{key_prefix}:v1:{products[0].id}")
    assert orjson.loads(raw) == products[0].to_dict()

    v2 = make_cached(redis_url=redis_url, key_prefix=key_prefix, namespace_version=2)
    await v2.get_many([products[0].id])

    assert v2.redis_hits == 0
    assert stub.stats()["batch_calls"] == 2


async def test_entries_expire_after_the_ttl(make_cached, stub, products, redis_url, key_prefix):
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix, ttl_seconds=0.3)
    await cached.get_many([products[0].id])
    ttl_ms = redis.Redis.from_url(redis_url).pttl(
        f"{key_prefix}:v{PRODUCT_CACHE_VERSION}:{products[0].id}"
    )
    assert 0 < ttl_ms <= 300

    await asyncio.sleep(0.35)
    await cached.get_many([products[0].id])

    assert stub.stats()["batch_calls"] == 2


async def test_an_unreadable_redis_entry_is_refetched(
    make_cached, stub, products, redis_url, key_prefix
):
    redis.Redis.from_url(redis_url).set(
        f"{key_prefix}:v{PRODUCT_CACHE_VERSION}:{products[2].id}", b"{not json"
    )
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix)

    assert await cached.get_many([products[2].id]) == {products[2].id: products[2]}
    assert stub.stats()["batch_calls"] == 1


async def test_when_the_service_fails_the_cached_details_travel_with_the_error(
    make_cached, stub, products, redis_url, key_prefix
):
    cached = make_cached(redis_url=redis_url, key_prefix=key_prefix)
    await cached.get_many([products[0].id])
    stub.faults(failure_rate=1.0)

    with pytest.raises(CatalogUnavailable) as raised:
        await cached.get_many([products[0].id, products[1].id])

    assert raised.value.known == {products[0].id: products[0]}


async def test_redis_stopped_mid_test_does_not_fail_requests(
    make_cached, stub, products, private_redis, caplog
):
    cached = make_cached(
        redis_url=private_redis.url, redis_timeout_ms=100, redis_cooldown_seconds=0.2
    )
    await cached.get_many([products[0].id])
    assert cached.redis_available

    private_redis.stop()
    with caplog.at_level(logging.WARNING, logger="finverse_reco.catalog.cache"):
        for product in products[1:6]:
            assert await cached.get_many([product.id]) == {product.id: product}
            await asyncio.sleep(0.05)  # let the cool-down lapse now and then

    assert await cached.get_many([products[0].id]) == {products[0].id: products[0]}  # memory
    assert cached.redis_errors >= 2  # it tried again after each cool-down
    assert stub.stats()["batch_calls"] == 6
    outage_warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(outage_warnings) == 1  # logged once per outage, not per request

    private_redis.start()  # same port
    await asyncio.sleep(0.25)  # past the cool-down
    await cached.get_many([products[7].id])
    stored = redis.Redis.from_url(private_redis.url).get(cached.key(products[7].id))
    assert orjson.loads(stored) == products[7].to_dict()


async def test_an_unreachable_redis_from_the_start_is_skipped(make_cached, stub, products):
    cached = make_cached(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    assert await cached.get_many([products[0].id]) == {products[0].id: products[0]}
    assert not cached.redis_available
    assert cached.redis_errors == 1  # the read failed; the write-back was skipped
