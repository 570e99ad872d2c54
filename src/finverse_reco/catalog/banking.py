"""Product details from the Banking Service over HTTP (the contract: docs/BANKING_SERVICE.md).

Every call is bounded twice: each attempt by a per-call timeout, the whole call (attempts, jittered
back-off and waiting for a pooled connection) by a latency budget. A circuit breaker (purgatory)
turns a failing service into an immediate `CatalogUnavailable`, so callers can degrade instead of
queueing behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from finverse_reco.catalog.base import CatalogUnavailable
from finverse_reco.products import Product

log = logging.getLogger(__name__)

BATCH_PATH = "/api/v1/products/batch"
LIST_PATH = "/api/v1/products"
MAX_BATCH_IDS = 1000
CIRCUIT_NAME = "banking-service"
# A retry that cannot get at least this long is not worth starting.
MIN_ATTEMPT_SECONDS = 0.02

T = TypeVar("T")


class _TransientFailure(Exception):
    """5xx or 429: the service is struggling; retried and counted by the breaker."""


class _RejectedRequest(Exception):
    """Another 4xx: our request is wrong while the service is fine; neither retried nor counted."""


class _MalformedResponse(Exception):
    """A body outside the contract: counted by the breaker, not retried (it would not change)."""


class BankingServiceCatalog:
    """ProductCatalog backed by the Banking Service: one batch call per `get_many`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_ms: float = 300,
        budget_ms: float = 800,
        max_retries: int = 2,
        backoff_ms: float = 25,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 10.0,
        max_connections: int = 100,
        page_size: int = 500,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"banking service URL must be http(s)://host[:port], got {base_url!r}")
        for name, value in {
            "timeout_ms": timeout_ms,
            "budget_ms": budget_ms,
            "breaker_failures": breaker_failures,
            "breaker_reset_seconds": breaker_reset_seconds,
            "max_connections": max_connections,
            "page_size": page_size,
        }.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if max_retries < 0 or backoff_ms < 0:
            raise ValueError("max_retries and backoff_ms must be >= 0")
        if not 1 <= page_size <= MAX_BATCH_IDS:
            raise ValueError(f"page_size must be in 1..{MAX_BATCH_IDS}, got {page_size}")

        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_ms / 1000
        self._budget_s = budget_ms / 1000
        self._max_retries = max_retries
        self._backoff_s = backoff_ms / 1000
        self._page_size = page_size
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json"},
        )
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_failures,
            default_ttl=breaker_reset_seconds,
            exclude=[_RejectedRequest],
        )
        self._breakers.add_listener(_log_breaker_event)
        self._breaker_context: Any = None  # purgatory's Context, kept to report its state
        self.attempts = 0  # HTTP requests sent, retries included (for metrics)

    @property
    def breaker_state(self) -> str:
        """'closed', 'opened' or 'half-opened' (purgatory's names)."""
        return "closed" if self._breaker_context is None else self._breaker_context.state

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        wanted = list(dict.fromkeys(product_ids))
        if not wanted:
            return {}
        if len(wanted) > MAX_BATCH_IDS:
            raise ValueError(f"at most {MAX_BATCH_IDS} product ids per call, got {len(wanted)}")
        products = await self._call(
            "POST", BATCH_PATH, _parse_batch, content=orjson.dumps({"ids": wanted})
        )
        asked = set(wanted)
        return {p.id: p for p in products if p.id in asked}

    def at_hand(self, product_ids: Sequence[str]) -> None:
        return None  # every answer is a call

    async def all_products(self) -> list[Product]:
        """Every product, page by page; each page has its own budget (this is not a request path)."""
        products: list[Product] = []
        offset: int | None = 0
        while offset is not None:
            page, next_offset = await self._call(
                "GET", LIST_PATH, _parse_page, params={"offset": offset, "limit": self._page_size}
            )
            if next_offset is not None and next_offset <= offset:
                raise CatalogUnavailable(f"banking service paged backwards at offset {offset}")
            products.extend(page)
            offset = next_offset
        return products

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _call(self, method: str, path: str, parse: Callable[[Any], T], **request: Any) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget_s
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1)
            | stop_before_delay(max(self._budget_s - MIN_ATTEMPT_SECONDS, 0)),
            wait=wait_random_exponential(multiplier=self._backoff_s, max=self._budget_s),
            retry=retry_if_exception_type((_TransientFailure, httpx.TransportError)),
            reraise=True,
        )
        # The breaker counts whole calls, retries included: a flaky service whose retries
        # succeed must not open it, only one that keeps failing requests.
        breaker = await self._breakers.get_breaker(CIRCUIT_NAME)
        self._breaker_context = breaker.context
        try:
            # The deadline also covers what httpx timeouts do not: the wait for a pooled
            # connection and a body trickling in under the per-read timeout.
            async with breaker, asyncio.timeout_at(deadline):
                return await retrying(self._attempt, method, path, parse, deadline, **request)
        except OpenedState as exc:
            # purgatory raises one OpenedState instance for as long as the circuit is open; each
            # raise would otherwise grow its traceback (and the frames it keeps alive).
            exc.__traceback__ = None
            raise CatalogUnavailable("banking service circuit is open") from None
        except TimeoutError:
            raise CatalogUnavailable(
                f"banking service did not answer within {self._budget_s * 1000:.0f} ms"
            ) from None
        except (httpx.HTTPError, _TransientFailure, _RejectedRequest, _MalformedResponse) as exc:
            raise CatalogUnavailable(f"banking service {method} {path}: {exc!r}") from exc

    async def _attempt(
        self, method: str, path: str, parse: Callable[[Any], T], deadline: float, **request: Any
    ) -> T:
        self.attempts += 1
        response = await self._client.request(
            method,
            self.base_url + path,
            timeout=min(self._timeout_s, deadline - asyncio.get_running_loop().time()),
            headers={"Content-Type": "application/json"} if "content" in request else None,
            **request,
        )
        return parse(_decode(response))


def _decode(response: httpx.Response) -> Any:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _TransientFailure(f"HTTP {status}")
    if status != 200:
        raise _RejectedRequest(f"HTTP {status}: {response.text[:200]}")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise _MalformedResponse(f"body is not JSON: {exc}") from None


def _parse_batch(body: Any) -> list[Product]:
    if not isinstance(body, dict):
        raise _MalformedResponse("batch response is not a JSON object")
    return _parse_products(body.get("products"))


def _parse_page(body: Any) -> tuple[list[Product], int | None]:
    if not isinstance(body, dict):
        raise _MalformedResponse("page response is not a JSON object")
    next_offset = body.get("next_offset")
    if next_offset is not None and (type(next_offset) is not int or next_offset < 0):
        raise _MalformedResponse(
            f"next_offset must be a non-negative integer or null: {next_offset!r}"
        )
    return _parse_products(body.get("products")), next_offset


def _parse_products(raw: Any) -> list[Product]:
    if not isinstance(raw, list):
        raise _MalformedResponse("'products' must be a list")
    products = []
    for item in raw:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("id", "name", "category", "institution")
        ):
            raise _MalformedResponse(f"product lacks id/name/category/institution: {item!r:.200}")
        products.append(Product.from_dict(item))
    return products


def _log_breaker_event(circuit: str, event_name: str, event: Any) -> None:
    if event_name == "state_changed":
        log.warning("circuit %s is now %s", circuit, event.state)
