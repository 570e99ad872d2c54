"""The Banking Service stub on a real socket, real Redis, and a private redis-server to stop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import httpx
import pytest
import redis

from finverse_reco.catalog.banking import BankingServiceCatalog
from finverse_reco.demo.banking_stub import BankingStubServer, create_banking_stub
from finverse_reco.products import Product

CATEGORIES = ("credit_card", "savings", "loan", "mortgage", "deposit")


def make_products(count: int) -> list[Product]:
    return [
        Product(
            id=f"prod-{i:03d}",
            name=f"Product {i}",
            category=CATEGORIES[i % len(CATEGORIES)],
            institution=f"bank-{i % 4}",
            interest_rate=round(0.5 + i * 0.1, 2),
            annual_fee=float(i % 3) * 25,
            risk_level=1 + i % 5,
        )
        for i in range(count)
    ]


class StubControl:
    """Reads the stub's call counts and changes its faults, over HTTP as any client would."""

    def __init__(self, server: BankingStubServer, client: httpx.Client) -> None:
        self.server = server
        self.client = client

    @property
    def url(self) -> str:
        return self.server.url

    def stats(self) -> dict[str, int]:
        return self.client.get(self.url + "/stats").json()

    def reset(self) -> None:
        self.client.delete(self.url + "/stats").raise_for_status()
        self.faults()

    def faults(self, **settings: float) -> None:
        self.client.put(self.url + "/faults", json=settings).raise_for_status()


@pytest.fixture(scope="package")
def products() -> list[Product]:
    return make_products(40)


@pytest.fixture(scope="package")
def stub_server(products: list[Product]):
    with BankingStubServer(create_banking_stub(products, seed=11)) as server:
        yield server


@pytest.fixture(scope="package")
def stub_http():
    with httpx.Client() as client:
        yield client


@pytest.fixture
def stub(stub_server: BankingStubServer, stub_http: httpx.Client) -> StubControl:
    control = StubControl(stub_server, stub_http)
    control.reset()
    return control


@pytest.fixture
async def make_banking(stub: StubControl):
    """Builds BankingServiceCatalogs against the stub (short settings) and closes them after."""
    built: list[BankingServiceCatalog] = []

    def build(**overrides: object) -> BankingServiceCatalog:
        options: dict[str, object] = {
            "timeout_ms": 300,
            "budget_ms": 800,
            "max_retries": 2,
            "backoff_ms": 5,
        }
        options.update(overrides)
        catalog = BankingServiceCatalog(str(options.pop("base_url", stub.url)), **options)
        built.append(catalog)
        return catalog

    yield build
    for catalog in built:
        await catalog.close()


@pytest.fixture
def key_prefix(redis_url: str):
    """A key namespace of this test's own in the shared Redis, deleted afterwards."""
    prefix = f"finverse-test:{uuid.uuid4().hex}:product"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + ":*"))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, so stopping it leaves the machine's Redis alone."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        self.process = subprocess.Popen(
            [
                self.binary,
                *(arg for name, value in options.items() for arg in (f"--{name}", value)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM
            self.process.wait(10)
        self.process = None


@pytest.fixture
def private_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: service-backed tests never skip)")
        pytest.skip(message)
    server = PrivateRedis(binary)
    server.start()
    yield server
    server.stop()
