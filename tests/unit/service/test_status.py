"""The overview's arithmetic: quantiles from histogram buckets, and counters over a sliding window."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from finverse_reco.service import status
from finverse_reco.service.status import TrafficWindow, quantile

INF = float("inf")


def test_quantile_interpolates_within_its_bucket_like_prometheus():
    # 100 observations: 50 under 10 ms, 40 more under 20 ms, the last 10 under 50 ms.
    buckets = {0.01: 50, 0.02: 90, 0.05: 100, INF: 100}
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.9, buckets) == pytest.approx(0.02)
    assert quantile(0.99, buckets) == pytest.approx(0.02 + 0.03 * 9 / 10)
    assert quantile(0.25, buckets) == pytest.approx(0.005)


def test_a_quantile_in_the_infinite_bucket_is_the_largest_finite_bound():
    assert quantile(0.99, {0.1: 1, 2.5: 2, INF: 100}) == 2.5


def test_no_observations_no_quantile():
    assert quantile(0.99, {}) is None
    assert quantile(0.99, {0.1: 0, INF: 0}) is None


def test_the_window_counts_what_happened_since_its_baseline(monkeypatch):
    registry = CollectorRegistry()
    counter = Counter("events", "test", ["kind"], registry=registry)
    latency = Histogram("latency_seconds", "test", buckets=(0.1, 1.0), registry=registry)
    counter.labels("a").inc(5)  # before the window exists: not counted
    clock = [1000.0]
    monkeypatch.setattr(status.time, "monotonic", lambda: clock[0])
    window = TrafficWindow(60, metrics=(counter, latency))

    counter.labels("a").inc(3)
    latency.observe(0.05)
    clock[0] += 10
    seconds, increase = window.delta()
    assert seconds == 10
    assert increase[("events_total", (("kind", "a"),))] == 3
    assert increase[("latency_seconds_bucket", (("le", "0.1"),))] == 1
    assert increase[("latency_seconds_count", ())] == 1

    counter.labels("a").inc(2)
    clock[0] += 70  # past the window: the snapshot taken 70 s ago becomes the baseline
    seconds, increase = window.delta()
    assert seconds == 70
    assert increase[("events_total", (("kind", "a"),))] == 2
