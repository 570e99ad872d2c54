"""Product details under Banking Service faults: healthy, faulty, then down, in one run.

A real `finverse-reco serve` runs in a subprocess over a temporary demo world and takes product
details from a `finverse-reco banking-stub` in another subprocess (FINVERSE_BANKING_URL, a 1 s
cache TTL so the cache does not hide the stub, no Redis). This process sends user and
similar-product recommendation requests at a fixed rate (open loop) over varied ids through three
phases: (1) the stub healthy, (2) the stub failing 30% of calls with 300 ms latency spikes
(`PUT /faults`), (3) the stub process stopped (SIGTERM). Every request's phase, status, latency and
`degraded` flag is kept.
Target (issue 7): every request answers 200 in every phase; with the stub down p99 ≤ 2 × the
healthy p99 of the same run and every response says `degraded: true` (requests sent within the
cache TTL after the stop may still be answered from cache, so they are counted apart). --check
exits 1 when missed. The run prints a table, writes --json and appends a row to docs/BENCHMARKS.md
(skip with --no-docs).

    .venv/bin/python bench/degradation.py --rate 60 --phase-seconds 20 --json bench/results/degradation.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop

from finverse_reco.catalog.local import read_catalog_file
from lifecycle import ServeProcess, free_port, prepare_world, world_settings  # bench/lifecycle.py
from reporting import add_table_rows, machine, verdict  # bench/reporting.py

SECTION = "## Product details under Banking Service faults (bench/degradation.py)"
TABLE_HEADER = (
    "| date | machine | rate req/s | s per phase | requests | non-200 | healthy p99 ms"
    " | faulty p99 ms | down p99 ms | down / healthy p99 | degraded healthy / faulty / down"
    " | stub calls (failed, spiked) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)
TARGET_RATIO = 2.0
PHASES = ("healthy", "faulty", "down")
USER_PATH = "/api/v1/recommendations/products/{}"
SIMILAR_PATH = "/api/v1/recommendations/similar-products/{}"


# --- the Banking Service stand-in


class StubProcess:
    """`finverse-reco banking-stub` over `catalog` in a subprocess, answering /health on exit from
    `__enter__`; `stop()` sends SIGTERM (the phase-3 outage) and `__exit__` makes sure it is gone."""

    def __init__(self, catalog: Path, log_path: Path, *, seed: int, start_timeout: float = 30):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [
            sys.executable,
            "-m",
            "finverse_reco",
            "banking-stub",
            "--port",
            str(self.port),
            "--catalog",
            str(catalog),
            "--seed",
            str(seed),
        ]
        self._log_path = log_path
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StubProcess:
        with self._log_path.open("w") as log:
            self._process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, cwd=self._log_path.parent
            )
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"banking-stub exited with {self._process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"banking-stub not ready after {self._start_timeout}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; the exit code."""
        if self._process is None or self._process.poll() is not None:
            return None if self._process is None else self._process.returncode
        self._process.terminate()
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the load


@dataclass(frozen=True, slots=True)
class Sample:
    phase: str
    endpoint: str  # "user" or "similar"
    sent: float  # seconds since the run started
    latency: float  # seconds
    status: int  # 0 when no response came back
    degraded: bool | None  # None when the answer was not a 200 with the flag
    error: str | None = None


@dataclass(slots=True)
class PhaseRun:
    rate: float
    phase_seconds: float
    samples: list[Sample] = field(default_factory=list)
    faults_at: float | None = None  # when PUT /faults was answered
    stub_stopped_at: float | None = None  # when SIGTERM was sent
    stub_exit_code: int | None = None
    stub_stats: dict[str, Any] | None = None  # read just before the stop
    max_send_lag: float = 0.0


async def _request(
    client: httpx.AsyncClient, endpoint: str, path: str, phase: str, started: float
) -> Sample:
    sent = time.perf_counter()
    try:
        response = await client.get(path)
        latency = time.perf_counter() - sent
        degraded, error = None, None
        if response.status_code == 200:
            flag = response.json().get("degraded")
            degraded, error = (flag, None) if isinstance(flag, bool) else (None, "no degraded flag")
        else:
            error = response.text[:200]
        return Sample(
            phase, endpoint, sent - started, latency, response.status_code, degraded, error
        )
    except httpx.HTTPError as exc:
        latency = time.perf_counter() - sent
        return Sample(phase, endpoint, sent - started, latency, 0, None, repr(exc))


async def _stop(stub: StubProcess, run: PhaseRun) -> None:
    # Off the loop: requests keep leaving on schedule while the stub shuts down.
    run.stub_exit_code = await asyncio.to_thread(stub.stop)


def _pick(rng: random.Random, user_ids: list[str], product_ids: list[str], similar_share: float):
    if product_ids and rng.random() < similar_share:
        return "similar", SIMILAR_PATH.format(rng.choice(product_ids))
    return "user", USER_PATH.format(rng.choice(user_ids))


async def _similar_ids(client: httpx.AsyncClient, candidates: list[str]) -> list[str]:
    """The catalog products the model can find neighbours for (the others answer 404 by design).

    Ten at a time: a cold burst of hundreds would itself push the service past its Banking
    Service budget and open the breaker before the healthy phase starts."""
    found = []
    for start in range(0, len(candidates), 10):
        chunk = candidates[start : start + 10]
        answers = await asyncio.gather(*(client.get(SIMILAR_PATH.format(p)) for p in chunk))
        found += [p for p, r in zip(chunk, answers, strict=True) if r.status_code == 200]
    return found


async def _until_undegraded(client: httpx.AsyncClient, user_id: str) -> None:
    """Wait for a full (undegraded) answer: the healthy phase must start with the breaker closed."""
    while True:
        answer = (await client.get(USER_PATH.format(user_id))).raise_for_status().json()
        if answer.get("degraded") is False:
            return
        await asyncio.sleep(0.2)


async def run_phases(
    server_url: str,
    stub: StubProcess,
    *,
    rate: float,
    phase_seconds: float,
    faults: dict[str, float],
    user_ids: list[str],
    product_ids: list[str],
    similar_share: float,
    seed: int = 1,
    max_connections: int = 200,
) -> PhaseRun:
    """Requests at `rate` per second for three phases of `phase_seconds`: stub healthy, stub with
    `faults`, stub stopped."""
    rng = random.Random(seed)
    run = PhaseRun(rate=rate, phase_seconds=phase_seconds)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    async with (
        httpx.AsyncClient(base_url=server_url, limits=limits, timeout=10) as client,
        httpx.AsyncClient(base_url=stub.url, timeout=5) as stub_admin,
    ):
        product_ids = await _similar_ids(client, product_ids)
        # Connections opened and first-request work done before the clock starts.
        for _ in range(20):
            await asyncio.gather(
                *(
                    client.get(_pick(rng, user_ids, product_ids, similar_share)[1])
                    for _request_n in range(10)
                )
            )
        async with asyncio.timeout(30):  # past the breaker's reset time: something is wrong
            await _until_undegraded(client, user_ids[0])
        (await stub_admin.delete("/stats")).raise_for_status()
        started = time.perf_counter()
        pending: list[asyncio.Task[Sample]] = []
        stopping: asyncio.Task[None] | None = None
        phase = PHASES[0]
        for n in itertools.count():
            due = n / rate
            if due >= 3 * phase_seconds:
                break
            if phase == "healthy" and due >= phase_seconds:
                (await stub_admin.put("/faults", json=faults)).raise_for_status()
                run.faults_at = time.perf_counter() - started
                phase = "faulty"
            elif phase == "faulty" and due >= 2 * phase_seconds:
                run.stub_stats = (await stub_admin.get("/stats")).raise_for_status().json()
                run.stub_stopped_at = time.perf_counter() - started  # SIGTERM sent
                stopping = asyncio.create_task(_stop(stub, run))
                phase = "down"
            delay = started + due - time.perf_counter()
            run.max_send_lag = max(run.max_send_lag, -delay)
            await asyncio.sleep(max(delay, 0))
            endpoint, path = _pick(rng, user_ids, product_ids, similar_share)
            pending.append(asyncio.create_task(_request(client, endpoint, path, phase, started)))
        run.samples = list(await asyncio.gather(*pending))
        if stopping is not None:
            await stopping
    run.samples.sort(key=lambda s: s.sent)
    return run


# --- the report


def _percentile_ms(samples: list[Sample], q: float) -> float | None:
    if not samples:
        return None
    return float(np.percentile([s.latency for s in samples], q) * 1000)


def summarize(run: PhaseRun, cache_ttl_seconds: float) -> dict[str, Any]:
    """Per phase: requests, non-200, share degraded, p50/p99; and the down / healthy p99 ratio.

    Phase 3's degraded count leaves out requests sent within the cache TTL after the stop: their
    product details may still be in the in-process cache, so an undegraded answer is right there."""
    phases: dict[str, Any] = {}
    for phase in PHASES:
        samples = [s for s in run.samples if s.phase == phase]
        answered = [s for s in samples if s.status == 200]
        phases[phase] = {
            "requests": len(samples),
            "non_200": len(samples) - len(answered),
            "degraded_share": (
                sum(bool(s.degraded) for s in answered) / len(answered) if answered else None
            ),
            "p50_ms": _percentile_ms(samples, 50),
            "p99_ms": _percentile_ms(samples, 99),
            "max_ms": _percentile_ms(samples, 100),
            "slowest": [
                {
                    "sent_s": round(s.sent, 3),
                    "ms": round(s.latency * 1000, 1),
                    "degraded": s.degraded,
                }
                for s in sorted(samples, key=lambda s: s.latency)[-5:]
            ],
            "by_endpoint": {
                endpoint: {
                    "requests": len(part),
                    "p99_ms": _percentile_ms(part, 99),
                }
                for endpoint in ("user", "similar")
                if (part := [s for s in samples if s.endpoint == endpoint])
            },
        }
    settled_after = (run.stub_stopped_at or 0.0) + cache_ttl_seconds
    down = [s for s in run.samples if s.phase == "down"]
    settled = [s for s in down if s.sent >= settled_after]
    healthy_p99, down_p99 = phases["healthy"]["p99_ms"], phases["down"]["p99_ms"]
    return {
        "rate": run.rate,
        "phase_seconds": run.phase_seconds,
        "requests": len(run.samples),
        "non_200": sum(p["non_200"] for p in phases.values()),
        "phases": phases,
        "down_settled_requests": len(settled),
        "down_settled_not_degraded": sum(s.degraded is not True for s in settled),
        "down_in_cache_window_not_degraded": sum(
            s.degraded is not True for s in down if s.sent < settled_after
        ),
        "down_p99_over_healthy": (
            down_p99 / healthy_p99 if healthy_p99 and down_p99 is not None else None
        ),
        "faulty_p99_over_healthy": (
            phases["faulty"]["p99_ms"] / healthy_p99
            if healthy_p99 and phases["faulty"]["p99_ms"] is not None
            else None
        ),
        "faults_at": run.faults_at,
        "stub_stopped_at": run.stub_stopped_at,
        "stub_exit_code": run.stub_exit_code,
        "stub_stats_before_stop": run.stub_stats,
        "max_send_lag_ms": run.max_send_lag * 1000,
        "failures": [asdict(s) for s in run.samples if s.status != 200][:10],
    }


def misses_target(summary: dict[str, Any]) -> list[str]:
    misses = []
    for phase, numbers in summary["phases"].items():
        if numbers["non_200"]:
            misses.append(f"{numbers['non_200']} non-200 answers while {phase}")
    ratio = summary["down_p99_over_healthy"]
    if ratio is None or ratio > TARGET_RATIO:
        misses.append(f"p99 down / healthy = {_fmt(ratio, 2)} > {TARGET_RATIO}")
    if summary["down_settled_not_degraded"] or not summary["down_settled_requests"]:
        misses.append(
            f"{summary['down_settled_not_degraded']} of {summary['down_settled_requests']}"
            " answers with the stub down (past the cache TTL) not degraded"
        )
    return misses


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_table(summary: dict[str, Any]) -> None:
    header = f"{'phase':<8} {'requests':>8} {'non-200':>7} {'degraded':>8} {'p50 ms':>8} "
    header += f"{'p99 ms':>8} {'max ms':>8}"
    print(header)
    for phase, p in summary["phases"].items():
        print(
            f"{phase:<8} {p['requests']:>8} {p['non_200']:>7} {_share(p['degraded_share']):>8}"
            f" {_fmt(p['p50_ms'], 2):>8} {_fmt(p['p99_ms'], 2):>8} {_fmt(p['max_ms'], 1):>8}"
        )
    stats = summary["stub_stats_before_stop"] or {}
    print(
        f"p99 down / healthy: {_fmt(summary['down_p99_over_healthy'], 2)}"
        f" (target ≤ {TARGET_RATIO}); faulty / healthy:"
        f" {_fmt(summary['faulty_p99_over_healthy'], 2)}"
    )
    print(
        f"down, past the cache TTL: {summary['down_settled_not_degraded']} of"
        f" {summary['down_settled_requests']} not degraded; within it:"
        f" {summary['down_in_cache_window_not_degraded']} not degraded"
    )
    print(
        f"stub before the stop: {stats.get('batch_calls', '-')} batch calls,"
        f" {stats.get('failures_injected', '-')} failed, {stats.get('spikes_injected', '-')}"
        f" spiked; stopped at {_fmt(summary['stub_stopped_at'])} s"
        f" (exit {summary['stub_exit_code']}); generator max lag"
        f" {_fmt(summary['max_send_lag_ms'])} ms"
    )


def append_to_docs(summary: dict[str, Any]) -> None:
    p = summary["phases"]
    stats = summary["stub_stats_before_stop"] or {}
    row = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {machine()} | {summary['rate']:g}"
        f" | {summary['phase_seconds']:g} | {summary['requests']:,} | {summary['non_200']}"
        f" | {_fmt(p['healthy']['p99_ms'], 2)} | {_fmt(p['faulty']['p99_ms'], 2)}"
        f" | {_fmt(p['down']['p99_ms'], 2)} | {_fmt(summary['down_p99_over_healthy'], 2)}"
        f" | {' / '.join(_share(p[name]['degraded_share']) for name in PHASES)}"
        f" | {stats.get('batch_calls', '-')} ({stats.get('failures_injected', '-')},"
        f" {stats.get('spikes_injected', '-')}) |"
    )
    intro = __doc__.split("\n\n")[0].replace("\n", " ")
    add_table_rows(SECTION, intro, TABLE_HEADER, [row])


@contextmanager
def _world(arguments: argparse.Namespace) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="finverse-degradation-") as workdir:
        root = Path(workdir)
        print("seeding the demo world and training the first model …", file=sys.stderr)
        prepare_world(
            world_settings(root, model_epochs=arguments.epochs),
            seed=arguments.seed,
            users=arguments.users,
            products=arguments.products,
            events=arguments.events,
        )
        yield root


def main(arguments: argparse.Namespace) -> int:
    faults = {
        "failure_rate": arguments.failure_rate,
        "latency_spike_ms": arguments.spike_ms,
        "spike_rate": arguments.spike_rate,
    }
    with (
        _world(arguments) as root,
        StubProcess(root / "catalog.json", root / "stub.log", seed=arguments.seed) as stub,
    ):
        banking = {
            f"banking_{name}": value
            for name in ("timeout_ms", "budget_ms", "breaker_failures", "breaker_reset_seconds")
            if (value := getattr(arguments, name)) is not None
        }
        settings = world_settings(
            root,
            banking_url=stub.url,
            cache_ttl_seconds=arguments.cache_ttl,
            redis_url=None,
            model_epochs=arguments.epochs,
            **banking,
        )
        user_ids = [f"user_{n:05d}" for n in range(1, arguments.users + 1)]
        product_ids = [p.id for p in read_catalog_file(root / "catalog.json")]
        with ServeProcess(settings, root / "serve.log") as server:
            print(
                f"load: {arguments.rate:g} req/s, 3 phases of {arguments.phase_seconds:g}s"
                f" on {server.url}, stub {stub.url} …",
                file=sys.stderr,
            )
            run = uvloop.run(
                run_phases(
                    server.url,
                    stub,
                    rate=arguments.rate,
                    phase_seconds=arguments.phase_seconds,
                    faults=faults,
                    user_ids=user_ids,
                    product_ids=product_ids,
                    similar_share=arguments.similar_share,
                )
            )
    summary = summarize(run, arguments.cache_ttl)
    print_table(summary)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": {"down_p99_over_healthy": TARGET_RATIO, "non_200": 0},
            "faults": faults,
            "settings": {
                "cache_ttl_seconds": arguments.cache_ttl,
                "banking_timeout_ms": settings.banking_timeout_ms,
                "banking_budget_ms": settings.banking_budget_ms,
                "banking_max_retries": settings.banking_max_retries,
                "banking_breaker_failures": settings.banking_breaker_failures,
                "banking_breaker_reset_seconds": settings.banking_breaker_reset_seconds,
            },
            "world": {
                "seed": arguments.seed,
                "users": arguments.users,
                "products": arguments.products,
                "events": arguments.events,
                "epochs": arguments.epochs,
            },
            "summary": summary,
        }
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    if not arguments.no_docs:
        append_to_docs(summary)
    return verdict(misses_target(summary), arguments.check)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=60, help="requests per second")
    parser.add_argument("--phase-seconds", type=float, default=20, help="seconds of each phase")
    parser.add_argument("--failure-rate", type=float, default=0.3, help="stub 503 share, phase 2")
    parser.add_argument("--spike-ms", type=float, default=300, help="stub latency spike, phase 2")
    parser.add_argument("--spike-rate", type=float, default=0.2, help="share of calls that spike")
    parser.add_argument(
        "--similar-share", type=float, default=0.2, help="share of similar-product requests"
    )
    parser.add_argument("--cache-ttl", type=int, default=1, help="FINVERSE_CACHE_TTL_SECONDS")
    for name, kind in (
        ("timeout_ms", int),
        ("budget_ms", int),
        ("breaker_failures", int),
        ("breaker_reset_seconds", float),
    ):
        option = "--" + name.replace("_", "-")
        parser.add_argument(option, type=kind, help=f"FINVERSE_BANKING_{name.upper()}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--products", type=int, default=240)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_arguments()))
