"""Product details cache: an in-process TTL cache in front, Redis (shared by replicas) behind it.

A `get_many` reads memory, then one Redis MGET for what memory lacked, then asks the inner catalog
once for the rest and writes what it learnt back to both. Products the inner catalog does not know
are remembered as absent too (for a shorter time), so an unknown id does not cost a call per request.
Redis is an optimisation only: any Redis error makes the cache skip Redis for a cool-down period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence

import orjson
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from finverse_reco import telemetry
from finverse_reco.catalog.base import CatalogUnavailable, ProductCatalog
from finverse_reco.products import Product

log = logging.getLogger(__name__)

# Bump when the cached form of Product changes: old entries are then simply never read again.
PRODUCT_CACHE_VERSION = 2
DEFAULT_KEY_PREFIX = "finverse:product"
_ABSENT = b"null"  # Redis value for "the catalog does not know this id"


class CachedCatalog:
    """ProductCatalog in front of another one (typically BankingServiceCatalog)."""

    def __init__(
        self,
        inner: ProductCatalog,
        *,
        ttl_seconds: float,
        redis_url: str | None = None,
        namespace_version: int = PRODUCT_CACHE_VERSION,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_entries: int = 10_000,
        absent_ttl_seconds: float | None = None,
        redis_timeout_ms: float = 50,
        redis_cooldown_seconds: float = 5.0,
    ) -> None:
        if ttl_seconds <= 0 or max_entries <= 0 or redis_timeout_ms <= 0:
            raise ValueError("ttl_seconds, max_entries and redis_timeout_ms must be > 0")
        absent_ttl = min(ttl_seconds, 60.0) if absent_ttl_seconds is None else absent_ttl_seconds
        if absent_ttl <= 0 or redis_cooldown_seconds < 0:
            raise ValueError("absent_ttl_seconds must be > 0 and redis_cooldown_seconds >= 0")
        self._inner = inner
        self._ttl_ms = int(ttl_seconds * 1000)
        self._absent_ttl_ms = int(absent_ttl * 1000)
        self._key_prefix = f"{key_prefix}:v{namespace_version}:"
        self._products: TTLCache[str, Product] = TTLCache(max_entries, ttl_seconds)
        self._absent: TTLCache[str, bool] = TTLCache(max_entries, absent_ttl)
        self._redis_timeout_s = redis_timeout_ms / 1000
        self._redis_cooldown_s = redis_cooldown_seconds
        self._redis_skip_until = 0.0
        self._redis_down = False
        self._redis: Redis | None = None
        if redis_url:
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=self._redis_timeout_s,
                socket_connect_timeout=self._redis_timeout_s,
                # redis-py retries by default, with back-off; a cache must fail fast instead.
                retry=Retry(NoBackoff(), 0),
            )
        # Counters for metrics: ids answered from memory / Redis, ids and calls sent to `inner`.
        self.memory_hits = 0
        self.redis_hits = 0
        self.misses = 0
        self.inner_calls = 0
        self.redis_errors = 0

    @property
    def inner(self) -> ProductCatalog:
        """The catalog this cache fronts."""
        return self._inner

    def key(self, product_id: str) -> str:
        return self._key_prefix + product_id

    @property
    def redis_available(self) -> bool:
        """False while Redis is being skipped after an error (or when none is configured)."""
        return self._redis is not None and time.monotonic() >= self._redis_skip_until

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        wanted = list(dict.fromkeys(product_ids))
        found, pending = self._from_memory(wanted)
        memory_hits = len(wanted) - len(pending)
        self.memory_hits += memory_hits

        if pending and self.redis_available:
            before_redis = len(pending)
            pending = await self._read_redis(pending, found)
            redis_hits = before_redis - len(pending)
        else:
            redis_hits = 0
        telemetry.record_cache_lookups(
            memory_hits=memory_hits, redis_hits=redis_hits, misses=len(pending)
        )

        if pending:
            self.misses += len(pending)
            self.inner_calls += 1
            try:
                fetched = await self._inner.get_many(pending)
            except CatalogUnavailable as exc:
                raise CatalogUnavailable(str(exc), known=found) from exc
            absent = [pid for pid in pending if pid not in fetched]
            self._remember(fetched.values(), absent)
            if self.redis_available:
                await self._write_redis(fetched, absent)
            found.update(fetched)
        return {pid: found[pid] for pid in wanted if pid in found}

    def at_hand(self, product_ids: Sequence[str]) -> dict[str, Product] | None:
        """From memory alone, when every id is cached there (as present or as absent)."""
        wanted = list(dict.fromkeys(product_ids))
        found, pending = self._from_memory(wanted)
        if pending:
            return None
        self.memory_hits += len(wanted)
        telemetry.record_cache_lookups(memory_hits=len(wanted))
        return found

    async def all_products(self) -> list[Product]:
        return await self._inner.all_products()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        await self._inner.close()

    def _from_memory(self, wanted: list[str]) -> tuple[dict[str, Product], list[str]]:
        """(details cached in memory, ids neither cached nor known absent), in `wanted` order."""
        found: dict[str, Product] = {}
        pending: list[str] = []
        for pid in wanted:
            product = self._products.get(pid)
            if product is not None:
                found[pid] = product
            elif pid not in self._absent:
                pending.append(pid)
        return found, pending

    def _remember(self, products: Iterable[Product], absent: Iterable[str]) -> None:
        for product in products:
            self._products[product.id] = product
        for pid in absent:
            self._absent[pid] = True

    async def _read_redis(self, pending: list[str], found: dict[str, Product]) -> list[str]:
        """Fill `found` from one MGET; return the ids Redis could not answer."""
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                values = await self._redis.mget([self.key(pid) for pid in pending])
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)
            return pending
        self._redis_succeeded()
        still_pending, products, absent = [], [], []
        for pid, raw in zip(pending, values, strict=True):
            if raw == _ABSENT:
                absent.append(pid)
                continue
            product = _decode_product(raw, pid) if raw is not None else None
            if product is None:
                still_pending.append(pid)
            else:
                products.append(product)
                found[pid] = product
        self.redis_hits += len(products) + len(absent)
        self._remember(products, absent)
        return still_pending

    async def _write_redis(self, products: Mapping[str, Product], absent: Sequence[str]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for pid, product in products.items():
            pipe.set(self.key(pid), orjson.dumps(product.to_dict()), px=self._ttl_ms)
        for pid in absent:
            pipe.set(self.key(pid), _ABSENT, px=self._absent_ttl_ms)
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)
        else:
            self._redis_succeeded()

    def _redis_failed(self, exc: BaseException) -> None:
        self.redis_errors += 1
        self._redis_skip_until = time.monotonic() + self._redis_cooldown_s
        if not self._redis_down:  # one warning per outage, not one per request
            self._redis_down = True
            log.warning(
                "Redis unavailable (%r); product cache skips it, retrying every %.1f s",
                exc,
                self._redis_cooldown_s,
            )

    def _redis_succeeded(self) -> None:
        if self._redis_down:
            self._redis_down = False
            log.info("Redis is back; product cache uses it again")


def _decode_product(raw: bytes, product_id: str) -> Product | None:
    """The cached product, or None for an entry that is unreadable or not this product's."""
    try:
        data = orjson.loads(raw)
        product = Product.from_dict(data)
    except (orjson.JSONDecodeError, TypeError, AttributeError, ValueError):
        log.debug("unreadable cache entry for %s; refetching", product_id)
        return None
    return product if product.id == product_id else None
