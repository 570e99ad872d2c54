"""A Banking Service stand-in: serves a catalog over the contract in docs/BANKING_SERVICE.md.

It can add latency, latency spikes and failures (HTTP 503) so the demo, the tests and the benchmarks
see the client's timeouts, retries, breaker and cache at work. `GET /stats` counts the calls it
served; `PUT /faults` changes the fault settings of a running stub.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from finverse_reco.catalog.banking import BATCH_PATH, LIST_PATH, MAX_BATCH_IDS
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.products import Product


@dataclass
class StubFaults:
    """What the stub does to each product call (not to /stats, /faults, /health)."""

    latency_ms: float = 0.0
    latency_spike_ms: float = 0.0
    spike_rate: float = 0.0  # share of calls that get latency_spike_ms on top of latency_ms
    failure_rate: float = 0.0  # share of calls answered 503
    fail_next: int = 0  # the next N calls answer 503 whatever the rate (deterministic tests)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_spike_ms", "fail_next"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("spike_rate", "failure_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")

    @classmethod
    def from_json(cls, raw: Any) -> StubFaults:
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not set(raw) <= known:
            raise ValueError(f"faults must be an object with keys from {sorted(known)}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()):
            raise ValueError("fault values must be numbers")
        return cls(**raw)


@dataclass
class StubStats:
    batch_calls: int = 0
    list_calls: int = 0
    item_calls: int = 0
    ids_requested: int = 0
    failures_injected: int = 0
    spikes_injected: int = 0


class _StubState:
    def __init__(self, products: Sequence[Product], faults: StubFaults, seed: int | None) -> None:
        self.products = list(products)
        self.by_id = {p.id: p for p in self.products}
        self.faults = faults
        self.stats = StubStats()
        self.rng = random.Random(seed)

    async def inject_faults(self) -> Response | None:
        """Sleep as the faults say; a 503 response if this call is to fail."""
        faults = self.faults
        delay_ms = faults.latency_ms
        if faults.spike_rate and self.rng.random() < faults.spike_rate:
            delay_ms += faults.latency_spike_ms
            self.stats.spikes_injected += 1
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        failing = faults.fail_next > 0 or (
            faults.failure_rate > 0 and self.rng.random() < faults.failure_rate
        )
        if not failing:
            return None
        faults.fail_next = max(faults.fail_next - 1, 0)
        self.stats.failures_injected += 1
        return _error(503, "unavailable", "injected failure")


def create_banking_stub(
    products: Sequence[Product],
    *,
    latency_ms: float = 0,
    latency_spike_ms: float = 0,
    spike_rate: float = 0,
    failure_rate: float = 0,
    seed: int | None = None,
) -> Starlette:
    """The stub as an ASGI app over `products`."""
    state = _StubState(
        products,
        StubFaults(
            latency_ms=latency_ms,
            latency_spike_ms=latency_spike_ms,
            spike_rate=spike_rate,
            failure_rate=failure_rate,
        ),
        seed,
    )

    async def batch(request: Request) -> Response:
        state.stats.batch_calls += 1
        if failure := await state.inject_faults():
            return failure
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "bad_request", "body must be JSON")
        except ClientDisconnect:  # the client gave up (its timeout); nobody reads the answer
            return _error(499, "client_closed", "client closed the request")
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _error(422, "invalid_ids", "'ids' must be a list of strings")
        if len(ids) > MAX_BATCH_IDS:
            return _error(413, "too_many_ids", f"at most {MAX_BATCH_IDS} ids per call")
        state.stats.ids_requested += len(ids)
        found = [state.by_id[i].to_dict() for i in dict.fromkeys(ids) if i in state.by_id]
        missing = [i for i in dict.fromkeys(ids) if i not in state.by_id]
        return _json({"products": found, "missing": missing})

    async def list_products(request: Request) -> Response:
        state.stats.list_calls += 1
        try:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params.get("limit", 100))
        except ValueError:
            return _error(400, "bad_request", "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= MAX_BATCH_IDS:
            return _error(400, "bad_request", f"offset >= 0 and limit in 1..{MAX_BATCH_IDS}")
        if failure := await state.inject_faults():
            return failure
        page = state.products[offset : offset + limit]
        end = offset + len(page)
        return _json(
            {
                "products": [p.to_dict() for p in page],
                "total": len(state.products),
                "next_offset": end if end < len(state.products) else None,
            }
        )

    async def one_product(request: Request) -> Response:
        state.stats.item_calls += 1
        if failure := await state.inject_faults():
            return failure
        product = state.by_id.get(request.path_params["product_id"])
        if product is None:
            return _error(404, "not_found", "no such product")
        return _json(product.to_dict())

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            state.stats = StubStats()
        return _json(asdict(state.stats))

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            try:
                state.faults = StubFaults.from_json(orjson.loads(await request.body()))
            except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                return _error(422, "invalid_faults", str(exc))
        return _json(asdict(state.faults))

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "products": len(state.products)})

    return Starlette(
        routes=[
            Route(BATCH_PATH, batch, methods=["POST"]),
            Route(LIST_PATH, list_products, methods=["GET"]),
            Route(LIST_PATH + "/{product_id}", one_product, methods=["GET"]),
            Route("/stats", stats, methods=["GET", "DELETE"]),
            Route("/faults", faults, methods=["GET", "PUT"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def run_banking_stub(
    catalog_path: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    latency_ms: float = 0,
    latency_spike_ms: float = 0,
    spike_rate: float = 0,
    failure_rate: float = 0,
    seed: int | None = None,
) -> None:
    """Serve the catalog file until interrupted (the `banking-stub` command)."""
    app = create_banking_stub(
        read_catalog_file(catalog_path),
        latency_ms=latency_ms,
        latency_spike_ms=latency_spike_ms,
        spike_rate=spike_rate,
        failure_rate=failure_rate,
        seed=seed,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class BankingStubServer:
    """The stub on a real socket, served by uvicorn in a background thread.

    Port 0 picks a free port; `url` tells which. For tests, the demo and benchmarks that need the
    stub beside them in one process.
    """

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> BankingStubServer:
        """Serve (again, on the same port once one was picked) and wait until it listens."""
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name="banking-stub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"banking stub did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._server = self._thread = None

    def __enter__(self) -> BankingStubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)
