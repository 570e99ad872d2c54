"""What state the service is in: readiness with reasons, and the overview the operator console shows.

Traffic figures (request rate and p99 by route, degraded share, ingestion, dead letters, cache hits)
are read from this process's Prometheus metrics over a sliding window: each overview compares the
counters now with a snapshot about `window_seconds` old (or with the start, until there is one). They
describe the replica (worker) that answers; Prometheus sums them over replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from finverse_reco import telemetry
from finverse_reco.catalog.banking import BankingServiceCatalog
from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.catalog.cache import CachedCatalog
from finverse_reco.ingest import InteractionConsumer
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.refresh import RefreshJobs
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)

STORE_PING_SECONDS = 2.0
BROKER_PROBE_SECONDS = 2.0
QUANTILE = 0.99
_WINDOWED = (
    telemetry.REQUEST_LATENCY,
    telemetry.RECOMMENDATIONS,
    telemetry.DEGRADED,
    telemetry.INGESTED_EVENTS,
    telemetry.DEAD_LETTERED,
    telemetry.CACHE_LOOKUPS,
)

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]
    model_version: str | None
    model_refusal: str | None


async def readiness(
    models: ModelHolder, store: InteractionStore, consumer: InteractionConsumer | None
) -> Readiness:
    """Ready when a model is loaded, the store answers and (if configured) the broker is connected;
    each check says why not."""
    checks = {
        "model": f"ok: {models.version}" if models.index is not None else "no model loaded",
    }
    try:
        await asyncio.wait_for(store.ping(), STORE_PING_SECONDS)
        checks["store"] = "ok"
    except (StoreUnavailable, TimeoutError) as exc:
        checks["store"] = f"unavailable: {exc or 'timeout'}"
    if consumer is not None:
        checks["broker"] = "ok" if consumer.connected else "disconnected"
    ready = all(value.startswith("ok") for value in checks.values())
    return Readiness(ready, checks, models.version, models.last_refusal)


class TrafficWindow:
    """Snapshots of the windowed counters; `delta()` is now minus the newest snapshot that is at
    least `window_seconds` old (the oldest kept, until one is)."""

    def __init__(self, window_seconds: float, metrics: Iterable[MetricWrapperBase] = _WINDOWED):
        self._window = window_seconds
        self._metrics = tuple(metrics)
        self._snapshots: deque[tuple[float, dict[Sample, float]]] = deque()
        self._snapshots.append((time.monotonic(), self._read()))

    def delta(self) -> tuple[float, dict[Sample, float]]:
        """(seconds covered, counter increase per sample) up to now."""
        now, current = time.monotonic(), self._read()
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= self._window:
            self._snapshots.popleft()
        since, baseline = self._snapshots[0]
        if now - self._snapshots[-1][0] >= 1.0:  # one snapshot a second is plenty
            self._snapshots.append((now, current))
        increase = {key: value - baseline.get(key, 0.0) for key, value in current.items()}
        return now - since, increase

    def _read(self) -> dict[Sample, float]:
        values = {}
        for metric in self._metrics:
            for family in metric.collect():
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values


class ServiceStatus:
    """The overview of one replica: health, model, traffic, ingestion, dependencies, refresh."""

    def __init__(
        self,
        models: ModelHolder,
        store: InteractionStore,
        catalog: ProductCatalog,
        jobs: RefreshJobs,
        consumer: InteractionConsumer | None,
        *,
        window_seconds: float = 60.0,
    ) -> None:
        self._models = models
        self._store = store
        self._catalog = catalog
        self._jobs = jobs
        self._consumer = consumer
        self._traffic = TrafficWindow(window_seconds)

    async def readiness(self) -> Readiness:
        return await readiness(self._models, self._store, self._consumer)

    async def overview(self) -> dict[str, Any]:
        ready = await self.readiness()
        seconds, increase = self._traffic.delta()
        per_second = 1 / seconds if seconds > 0 else 0.0
        recommendations = _sum(increase, "finverse_recommendations_total")
        degraded = _sum(increase, "finverse_degraded_responses_total")
        running = self._jobs.running
        return {
            "live": True,  # this answer comes from a running process
            "ready": ready.ready,
            "checks": ready.checks,
            "model": self._model(ready.model_refusal),
            "window_seconds": round(seconds, 1),
            "endpoints": _endpoints(increase, per_second),
            "recommendations": {
                "per_second": recommendations * per_second,
                "degraded_share": degraded / recommendations if recommendations else None,
                "by_strategy": _by_label(increase, "finverse_recommendations_total", "strategy"),
            },
            "ingestion": {
                "per_second": {
                    outcome: count * per_second
                    for outcome, count in _by_label(
                        increase, "finverse_ingested_events_total", "outcome"
                    ).items()
                },
                "dead_lettered": _by_label(increase, "finverse_dead_lettered_total", "queue"),
            },
            "dead_letter_queues": await self._dead_letter_queues(),
            "banking_service": self._banking_service(),
            "product_cache": self._product_cache(increase),
            "refresh_job": running.to_dict() if running is not None else None,
        }

    def _model(self, refusal: str | None) -> dict[str, Any]:
        version = self._models.version
        created = telemetry.version_created_at(version) if version else None
        loaded_at = self._models.loaded_at
        return {
            "version": version,
            "age_seconds": time.time() - created if created is not None else None,
            "loaded_seconds_ago": time.time() - loaded_at if loaded_at is not None else None,
            "refusal": refusal,
        }

    async def _dead_letter_queues(self) -> dict[str, Any]:
        if self._consumer is None:
            return {
                "available": False,
                "detail": "this process does not consume from RabbitMQ (FINVERSE_RABBITMQ_URL "
                "is unset); the consumer's /metrics counts dead letters",
                "depths": {},
                "recent": [],
            }
        recent = [
            {"at": letter.at.isoformat(), "queue": letter.queue, "reason": letter.reason}
            for letter in reversed(self._consumer.recent_dead_letters)
        ]
        try:
            async with asyncio.timeout(BROKER_PROBE_SECONDS):
                depths = await self._consumer.dead_letter_depths()
        except Exception as exc:  # the overview reports the broker's trouble, it does not fail
            log.warning("could not read the dead-letter queue depths: %s", exc)
            return {
                "available": False,
                "detail": f"broker not answering: {exc or 'timeout'}",
                "depths": {},
                "recent": recent,
            }
        return {"available": True, "detail": "", "depths": depths, "recent": recent}

    def _banking_service(self) -> dict[str, Any]:
        source = self._catalog.inner if isinstance(self._catalog, CachedCatalog) else self._catalog
        if not isinstance(source, BankingServiceCatalog):
            return {"configured": False, "breaker": None}
        return {"configured": True, "breaker": source.breaker_state}

    def _product_cache(self, increase: dict[Sample, float]) -> dict[str, Any]:
        if not isinstance(self._catalog, CachedCatalog):
            return {"configured": False, "hit_ratio": None, "lookups": 0}
        lookups = _by_label(increase, "finverse_product_cache_lookups_total", "result")
        total = sum(lookups.values())
        hits = lookups.get("memory_hit", 0.0) + lookups.get("redis_hit", 0.0)
        return {
            "configured": True,
            "hit_ratio": hits / total if total else None,
            "lookups": int(total),
        }


def _sum(increase: dict[Sample, float], name: str) -> float:
    return sum(value for (sample, _), value in increase.items() if sample == name)


def _by_label(increase: dict[Sample, float], name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for (sample, labels), value in increase.items():
        if sample == name:
            totals[dict(labels)[label]] += value
    return {key: value for key, value in totals.items() if value}


def _endpoints(increase: dict[Sample, float], per_second: float) -> list[dict[str, Any]]:
    """Request rate, server-error share and p99 latency by route template, busiest first."""
    counts: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (sample, label_pairs), value in increase.items():
        labels = dict(label_pairs)
        if sample == "finverse_http_request_seconds_count":
            counts[labels["route"]] += value
            if labels["status"].startswith("5"):
                errors[labels["route"]] += value
        elif sample == "finverse_http_request_seconds_bucket":
            buckets[labels["route"]][float(labels["le"])] += value
    rows = [
        {
            "route": route,
            "per_second": count * per_second,
            "requests": int(count),
            "server_errors": int(errors[route]),
            "p99_seconds": quantile(QUANTILE, buckets[route]),
        }
        for route, count in counts.items()
        if count
    ]
    return sorted(rows, key=lambda row: (-row["requests"], row["route"]))


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """A quantile from cumulative histogram buckets (upper bound → count), interpolated linearly
    within its bucket as Prometheus's histogram_quantile does; the largest finite bound when it
    falls in the +Inf bucket. None without observations."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
