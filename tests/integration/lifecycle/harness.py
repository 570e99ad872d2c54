"""The lifecycle benchmark's world, server and load generator (bench/lifecycle.py), which these tests
run at smoke size, plus small helpers for polling a running server."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

_BENCH = Path(__file__).resolve().parents[3] / "bench" / "lifecycle.py"
sys.path.insert(0, str(_BENCH.parent))  # the bench's own `reporting` module
_spec = importlib.util.spec_from_file_location("finverse_bench_lifecycle", _BENCH)
assert _spec is not None and _spec.loader is not None, f"cannot load {_BENCH}"
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)

ServeProcess = bench.ServeProcess
prepare_world = bench.prepare_world
run_load = bench.run_load
summarize = bench.summarize
world_settings = bench.world_settings
API_KEY = bench.BENCH_API_KEY
ADMIN = {"X-API-Key": API_KEY}
RECS = "/api/v1/recommendations"

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, within: float, every: float = 0.05, what: str = ""
) -> T:
    """The first truthy value `probe` returns, polling until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(every)


def serving_version(url: str) -> str | None:
    return httpx.get(f"{url}/ready", timeout=5).json()["model_version"]


def wait_for_job(url: str, job_id: str, within: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = httpx.get(f"{url}{RECS}/refresh-model/{job_id}", headers=ADMIN, timeout=5).json()
        return job if job["state"] != "running" else None

    return wait_until(finished, within=within, every=0.2, what=f"refresh job {job_id} finished")
