"""`serve --workers N`: N processes answer on one port, each with its own model watcher, and
`/metrics` from whichever worker answers counts every worker's requests (multiprocess mode)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from .harness import RECS, ServeProcess

REQUESTS = 200


def route_count(metrics: str, route: str) -> float:
    pattern = re.compile(
        rf'^finverse_http_request_seconds_count\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$',
        re.MULTILINE,
    )
    return sum(float(value) for value in pattern.findall(metrics))


@pytest.mark.slow
async def test_two_workers_share_the_port_and_their_metrics(world, tmp_path, user_ids):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with ServeProcess(
        world,
        tmp_path / "serve.log",
        args=("--workers", "2"),
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ) as server:
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.get(f"{RECS}/products/{user_ids[n % 50]}") for n in range(REQUESTS))
            )
            assert [r.status_code for r in responses] == [200] * REQUESTS
            versions = {r.json()["model_version"] for r in responses}
            assert len(versions) == 1, "every worker serves the active version"
            for _ in range(5):  # whichever worker answers, it reports both workers' counts
                metrics = (await client.get("/metrics")).text
                assert (
                    route_count(metrics, "/api/v1/recommendations/products/{user_id}") == REQUESTS
                )
    worker_pids = {
        match[1]
        for path in metrics_dir.iterdir()
        if (match := re.search(r"_(\d+)\.db$", path.name))
    }
    assert len(worker_pids) == 2, sorted(p.name for p in metrics_dir.iterdir())
