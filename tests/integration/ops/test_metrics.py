"""Scrape `/metrics` after real traffic and find every metric the operations guide promises, with
values that follow from that traffic. Metrics are process-wide, so each check compares a scrape
taken before the traffic with one taken after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from finverse_reco.api.app import create_app
from finverse_reco.catalog.banking import BankingServiceCatalog
from finverse_reco.catalog.cache import CachedCatalog
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.demo.banking_stub import BankingStubServer, create_banking_stub
from finverse_reco.ingest import IngestConfig, InteractionConsumer, InteractionPublisher
from finverse_reco.store import open_store

RECS = "/api/v1/recommendations"


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for (n, ls) in self.samples if n == name]


def scrape(client: TestClient) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


@pytest.fixture(scope="module")
def stub(trained) -> Iterator[BankingStubServer]:
    products = read_catalog_file(trained.catalog_path)
    with BankingStubServer(create_banking_stub(products, seed=5)) as server:
        yield server


@pytest.fixture(scope="module")
def client(trained, stub) -> Iterator[TestClient]:
    """The app with product details from the Banking Service stand-in behind the cache, and a job
    polling rate generous enough to poll a training job twice a second."""
    generous = trained.model_copy(update={"admin_read_rate_limit": "1000/minute"})
    catalog = CachedCatalog(
        BankingServiceCatalog(stub.url, breaker_failures=1000, max_retries=0), ttl_seconds=300
    )
    with TestClient(create_app(generous, catalog=catalog), raise_server_exceptions=False) as c:
        yield c


def set_stub_faults(stub: BankingStubServer, **faults: float) -> None:
    httpx.put(f"{stub.url}/faults", json=faults, timeout=5).raise_for_status()


def wait_for_job(client: TestClient, job_id: str, api_key: str, within: float = 180) -> dict:
    deadline = time.monotonic() + within
    while True:
        job = client.get(f"{RECS}/refresh-model/{job_id}", headers={"X-API-Key": api_key}).json()
        if job["state"] != "running":
            return job
        assert time.monotonic() < deadline, f"training job still running after {within}s"
        time.sleep(0.5)


def test_metrics_follow_the_traffic(client, stub, trained):
    before = scrape(client)
    started = time.time()

    for _ in range(3):
        assert client.get(f"{RECS}/products/user_00001").json()["strategy"] == "personalized"
    cold = client.get(f"{RECS}/products/newcomer_1?age_group=18-24&income_range=25k-50k")
    assert cold.json()["strategy"] == "features_cold_start"
    assert client.get(f"{RECS}/products/newcomer_2").json()["strategy"] == "popular"
    assert client.get(f"{RECS}/similar-products/prod_0001").json()["strategy"] == "similar"
    session = f"ops_sess_{uuid.uuid4().hex[:8]}"
    event = {
        "event_id": f"ops-{uuid.uuid4().hex}",
        "user_id": "newcomer_3",
        "session_id": session,
        "type": "product_view",
        "timestamp": "2026-11-27T12:00:00Z",
        "data": {"productId": "prod_0002", "viewDuration": 20},
    }
    writer = {"X-API-Key": trained.writer_api_keys[0]}
    assert client.post("/api/v1/interactions", json=event, headers=writer).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post("/api/v1/interactions", json=event, headers=writer).json()["duplicates"] == 1
    bad = client.post("/api/v1/interactions", json={**event, "type": "teleport"}, headers=writer)
    assert bad.status_code == 422
    assert client.get(f"{RECS}/session/{session}").json()["strategy"] == "session"

    set_stub_faults(stub, failure_rate=1.0)
    try:
        degraded = client.get(f"{RECS}/similar-products/prod_0150?limit=100").json()
    finally:
        set_stub_faults(stub, failure_rate=0.0)
    assert degraded["degraded"] is True

    job = client.post(f"{RECS}/refresh-model", headers={"X-API-Key": trained.api_key}).json()
    finished = wait_for_job(client, job["job_id"], trained.api_key)
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    # request latency by route and status
    route = f"{RECS}/products/{{user_id}}"
    assert grew("finverse_http_request_seconds_count", route=route, status="200") >= 5
    assert grew("finverse_http_request_seconds_sum", route=route, status="200") > 0
    assert grew("finverse_http_request_seconds_count", route="/api/v1/interactions", status="422")
    # recommendations by strategy, degraded responses
    for strategy in ("personalized", "features_cold_start", "popular", "session", "similar"):
        assert grew("finverse_recommendations_total", strategy=strategy) >= 1, strategy
    assert grew("finverse_recommendations_total", strategy="personalized") >= 3
    assert grew("finverse_degraded_responses_total") >= 1
    # active model version and age
    serving = client.get("/ready").json()["model_version"]
    assert after.series("finverse_model_info") == [{"version": serving}]
    assert after.value("finverse_model_info", version=serving) == 1
    assert 0 <= after.value("finverse_model_age_seconds") < time.time() - started + 3600
    assert after.value("finverse_model_loaded_timestamp_seconds") <= time.time()
    # training duration and outcome
    outcome = {"succeeded": "succeeded", "not_activated": "not_activated"}[finished["state"]]
    assert grew("finverse_training_seconds_count", outcome=outcome) == 1
    assert 0 < grew("finverse_training_seconds_sum", outcome=outcome) < time.time() - started
    # ingestion over HTTP
    assert grew("finverse_ingested_events_total", source="http", outcome="stored") == 1
    assert grew("finverse_ingested_events_total", source="http", outcome="duplicate") == 1
    assert grew("finverse_ingested_events_total", source="http", outcome="rejected") == 1
    # product-details cache: the repeated requests were answered from memory
    assert grew("finverse_product_cache_lookups_total", result="memory_hit") >= 10
    assert grew("finverse_product_cache_lookups_total", result="miss") >= 10
    hits = after.total("finverse_product_cache_lookups_total", result="memory_hit") + after.total(
        "finverse_product_cache_lookups_total", result="redis_hit"
    )
    lookups = after.total("finverse_product_cache_lookups_total")
    assert after.value("finverse_product_cache_hit_ratio") == pytest.approx(hits / lookups)
    assert 0 < after.value("finverse_product_cache_hit_ratio") < 1


@pytest.mark.rabbitmq
async def test_ingestion_and_dead_letter_metrics_come_from_the_consumer(
    client, rabbitmq_url, tmp_path
):
    prefix = f"ops{uuid.uuid4().hex[:8]}."
    config = IngestConfig(
        rabbitmq_url=rabbitmq_url,
        batch_size=10,
        batch_timeout_ms=20,
        name_prefix=prefix,
        connection_name=f"finverse-ops-{prefix}",
    )
    store = open_store(f"sqlite:///{tmp_path}/consumed.db")
    await store.open()
    consumer = InteractionConsumer(config, store)
    before = scrape(client)
    await consumer.start()
    try:
        good = {
            "event_id": f"mq-{uuid.uuid4().hex}",
            "user_id": "user_00001",
            "session_id": "s1",
            "type": "product_view",
            "timestamp": "2026-11-27T12:00:00Z",
            "data": {"productId": "prod_0001", "viewDuration": 5},
        }
        async with InteractionPublisher(config) as publisher:
            await publisher.publish_body(orjson.dumps(good), "product_view.web", message_id="ok-1")
            await publisher.publish_body(b"{not json", "product_view.web", message_id="bad-1")
        deadline = time.monotonic() + 20
        while consumer.stats.stored + consumer.stats.dead_lettered < 2:
            assert time.monotonic() < deadline, f"consumer stats: {consumer.stats}"
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await store.close()
    after = scrape(client)
    stored = after.total("finverse_ingested_events_total", source="rabbitmq", outcome="stored")
    assert (
        stored - before.total("finverse_ingested_events_total", source="rabbitmq", outcome="stored")
        == 1
    )
    dead = after.total("finverse_dead_lettered_total") - before.total(
        "finverse_dead_lettered_total"
    )
    assert dead == 1
    invalid = [s for s in after.series("finverse_dead_lettered_total") if s["reason"] == "invalid"]
    assert invalid and all(s["queue"] and not s["queue"].startswith(prefix) for s in invalid)
