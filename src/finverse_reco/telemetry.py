"""Every Prometheus metric of the service, in one module that api, ingest, catalog and training share.

Metric objects live in the process-wide default registry: each process (serve, consume, train) exposes
its own. `serve` answers `GET /metrics`; `consume` and `train --schedule` start a small metrics server
when `FINVERSE_METRICS_PORT` is set (`serve_metrics`).

`serve --workers N` runs prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
`cli.serve` before the workers start): each worker writes its samples to files there and whichever
worker answers `/metrics` reads them all (`exposition`). Counters and histograms sum over workers;
gauges carry a `pid` label; the cache-hit-ratio collector is left out (it reads only its own
process's counters, which the summed `finverse_product_cache_lookups_total` already covers).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# --- HTTP (api/metrics.py) ---------------------------------------------------------------------------
REQUEST_LATENCY = Histogram(
    "finverse_http_request_seconds",
    "HTTP request latency by route template, method and status",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RECOMMENDATIONS = Counter(
    "finverse_recommendations_total",
    "Recommendation responses by endpoint and strategy",
    ["endpoint", "strategy"],
)
DEGRADED = Counter(
    "finverse_degraded_responses_total", "Responses answered with less because a dependency failed"
)
# `labels()` takes a lock and builds a key on every call; the few (endpoint, strategy) children
# are looked up once (a few µs a request on the hot path).
_recommendations_child = cache(RECOMMENDATIONS.labels)


def count_recommendation(endpoint: str, strategy: str, *, degraded: bool) -> None:
    _recommendations_child(endpoint, strategy).inc()
    if degraded:
        DEGRADED.inc()


# --- the serving model (set at scrape time from the model holder) -----------------------------------
MODEL_INFO = Gauge(
    "finverse_model_info", "1 for the model version this process serves", ["version"]
)
MODEL_AGE = Gauge(
    "finverse_model_age_seconds",
    "Seconds since the serving model version was trained (NaN while no model is loaded)",
)
MODEL_LOADED_AT = Gauge(
    "finverse_model_loaded_timestamp_seconds",
    "Unix time at which this process swapped in the serving model (NaN while none is loaded)",
)

# --- online metrics (service/online_stats.py; set at scrape time from the store's events) -----------
# One family per measure, labelled by the dimension (model_version, strategy, arm, channel,
# age_group, income_range, category) and the group within it: every dimension on its own, never crossed, so
# the number of series stays the sum of the groups, not their product.
ONLINE_MEASURES = (
    "impressions",
    "clicks",
    "applications",
    "dismissals",
    "click_through_rate",
    "conversion_rate",
    "dismissal_rate",
    "exposure_share",
)
ONLINE = {
    measure: Gauge(
        f"finverse_online_{measure}",
        f"Online {measure.replace('_', ' ')} of impressed items over the trailing period "
        "(FINVERSE_ONLINE_METRICS_HOURS), by dimension and group",
        ["dimension", "group"],
    )
    for measure in ONLINE_MEASURES
}


def observe_online(reports: dict[str, dict]) -> None:
    """Point the online gauges at `OnlineStats.per_dimension` (called on every scrape)."""
    for gauge in ONLINE.values():
        gauge.clear()
    for dimension, report in reports.items():
        for row in report["groups"]:
            group = row["group"][dimension]
            for measure, gauge in ONLINE.items():
                gauge.labels(dimension, group).set(row[measure])


# --- training (service/refresh.py for jobs the API starts, cli.py for `train --schedule`) -----------
TRAINING_OUTCOMES = ("succeeded", "not_activated", "skipped", "failed")
TRAINING_SECONDS = Histogram(
    "finverse_training_seconds",
    "Duration of training runs by outcome (succeeded, not_activated, skipped, failed)",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)

# --- ingestion (ingest/ for RabbitMQ, the interactions router for HTTP) -----------------------------
INGEST_OUTCOMES = ("stored", "duplicate", "rejected", "erased")
INGESTED_EVENTS = Counter(
    "finverse_ingested_events_total",
    "Interaction events received, by source (rabbitmq, http) and outcome (stored, duplicate,"
    " rejected, erased: an erased customer's, dropped)",
    ["source", "outcome"],
)
DEAD_LETTERED = Counter(
    "finverse_dead_lettered_total",
    "Messages sent to a dead-letter queue, by source queue and reason (invalid, refused, max_attempts)",
    ["queue", "reason"],
)

# --- the audit trail (service/audit.py) -------------------------------------------------------------
AUDIT_OUTCOMES = ("stored", "overflowed", "unwritten_at_shutdown")
AUDIT_RECORDS = Counter(
    "finverse_audit_records_total",
    "Audit records of served lists, by outcome: stored; overflowed (the buffer was full while the"
    " store was down: never written); unwritten_at_shutdown (the store was down at shutdown)",
    ["outcome"],
)
AUDIT_BUFFERED = Gauge(
    "finverse_audit_buffered_records", "Audit records waiting in this process for the store"
)
AUDIT_WRITE_FAILURES = Counter(
    "finverse_audit_write_failures_total", "Audit batches the store failed to take (retried)"
)

# --- erasure (service/erasure.py, ingest/admission.py) -----------------------------------------------
ERASURES = Counter("finverse_erasures_total", "Customers erased (first erasure of each)")

# --- product-details cache (catalog/cache.py) --------------------------------------------------------
CACHE_RESULTS = ("memory_hit", "redis_hit", "miss")
CACHE_LOOKUPS = Counter(
    "finverse_product_cache_lookups_total",
    "Product ids looked up in the product-details cache, by result (memory_hit, redis_hit, miss)",
    ["result"],
)

_VERSION_TIME = re.compile(r"^(\d{8}T\d{6}Z)-")


def record_cache_lookups(*, memory_hits: int = 0, redis_hits: int = 0, misses: int = 0) -> None:
    """Count one `get_many`: how many ids came from memory, from Redis, and from the inner catalog."""
    for result, count in zip(CACHE_RESULTS, (memory_hits, redis_hits, misses), strict=True):
        if count:
            CACHE_LOOKUPS.labels(result).inc(count)


def record_training(outcome: str, seconds: float) -> None:
    if outcome not in TRAINING_OUTCOMES:
        raise ValueError(f"unknown training outcome {outcome!r}; one of {TRAINING_OUTCOMES}")
    TRAINING_SECONDS.labels(outcome).observe(seconds)


def observe_model(version: str | None, loaded_at: float | None, now: float | None = None) -> None:
    """Point the model gauges at the version this process serves (called on every scrape)."""
    MODEL_INFO.clear()
    if version is None:
        MODEL_AGE.set(float("nan"))
        MODEL_LOADED_AT.set(float("nan"))
        return
    now = time.time() if now is None else now
    MODEL_INFO.labels(version).set(1)
    trained_at = version_created_at(version)
    MODEL_AGE.set(now - (trained_at if trained_at is not None else loaded_at or now))
    MODEL_LOADED_AT.set(loaded_at if loaded_at is not None else float("nan"))


def version_created_at(version: str) -> float | None:
    """Unix time encoded in a version name (`20261127T101500Z-abc123`, model/artifacts.py)."""
    match = _VERSION_TIME.match(version)
    if match is None:
        return None
    return datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


class _CacheHitRatio(Collector):
    """Share of product ids answered from the cache (memory or Redis) since the process started."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = dict.fromkeys(CACHE_RESULTS, 0.0)
        for metric in CACHE_LOOKUPS.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["result"]] = sample.value
        total = sum(counts.values())
        hits = counts["memory_hit"] + counts["redis_hit"]
        yield GaugeMetricFamily(
            "finverse_product_cache_hit_ratio",
            "Share of product-detail lookups answered by the cache since start (NaN before any)",
            value=hits / total if total else float("nan"),
        )


REGISTRY.register(_CacheHitRatio())


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics on http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)


def exposition() -> bytes:
    """The text `/metrics` answers: this process's registry, or every worker's in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
