"""Model lifecycle under load: a retrain and a hot swap in the middle of steady traffic.

A real `finverse-reco serve` runs in a subprocess on a free port over a temporary demo world (SQLite
store, catalog file, one trained model). This process sends user recommendation requests at a fixed
rate (open loop: a request leaves on schedule whether or not earlier ones have answered), over varied
user ids, and at `--refresh-at` seconds asks the service to retrain (`POST refresh-model`). Every
request's latency, status and `model_version` is kept. The report compares the p99 before the
refresh (idle) with the p99 while the training child runs, counts failures and versions served, and
says when the new version was first served.
Target (issue): ≥ 200 req/s for 60 s, zero failed requests, every response names one model version,
p99 while training ≤ 3 × idle p99. --check exits 1 when missed. The run prints a table, writes --json
and appends a row to docs/BENCHMARKS.md (skip with --no-docs).

    .venv/bin/python bench/lifecycle.py --rate 200 --duration 60 --refresh-at 20 --json bench/results/lifecycle.json

The world, `ServeProcess` and `run_load` are also what tests/integration/lifecycle runs at smoke size.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import itertools
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import uvloop

from finverse_reco.cli import seed_demo, train_once
from finverse_reco.settings import Settings, settings_env
from reporting import add_table_rows, machine, verdict  # bench/reporting.py

SECTION = "## Model lifecycle under load (bench/lifecycle.py)"
TABLE_HEADER = (
    "| date | machine | rate req/s | s | requests | failed | versions | idle p99 ms"
    " | training p99 ms | ratio | swap at s | training s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)
TARGET_RATIO = 3.0
USER_PATH = "/api/v1/recommendations/products/{}"
REFRESH_PATH = "/api/v1/recommendations/refresh-model"
BENCH_API_KEY = "lifecycle-bench-key"


# --- the world and the server


def world_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for a world kept under `root`; `overrides` are Settings fields."""
    values: dict[str, Any] = {
        "store_url": f"sqlite:///{root}/interactions.db",
        "model_dir": root / "models",
        "catalog_path": root / "catalog.json",
        "api_key": BENCH_API_KEY,
        "refresh_schedule": "off",
        "admin_rate_limit": "1000/minute",
        "admin_read_rate_limit": "6000/minute",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def prepare_world(settings: Settings, *, seed: int, users: int, products: int, events: int) -> None:
    """Seed the demo world into the settings' store and catalog, then train and activate a model."""
    asyncio.run(seed_demo(settings, seed=seed, users=users, products=products, events=events))
    code = asyncio.run(train_once(settings))
    if code != 0:
        raise RuntimeError(f"the first training exited with code {code}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """`finverse-reco serve` in a subprocess with `settings` as FINVERSE_* variables, ready on exit
    from `__enter__` (its /ready answers 200) and stopped on `__exit__`. Output goes to `log_path`."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        start_timeout: float = 60,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self._args = args
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._start_timeout = start_timeout
        self._env = {
            **os.environ,
            **settings_env(settings),
            "FINVERSE_HOST": "127.0.0.1",
            "FINVERSE_PORT": str(self.port),
            "OPENBLAS_NUM_THREADS": "1",
            **(env or {}),
        }
        self._cwd = log_path.parent  # no stray .env from the caller's directory
        self._process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    def __enter__(self) -> ServeProcess:
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "finverse_reco", "serve", *self._args],
            env=self._env,
            cwd=self._cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._process.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"serve exited with {self._process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"serve not ready after {self._start_timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


# --- the load


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # seconds since the run started
    latency: float  # seconds
    status: int  # 0 when no response came back
    version: str | None
    error: str | None = None

    @property
    def answered(self) -> float:
        return self.sent + self.latency

    @property
    def failed(self) -> bool:
        return self.status != 200 or self.version is None or self.error is not None


@dataclass(slots=True)
class LoadRun:
    rate: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    refresh_posted: float | None = None
    training_ended: float | None = None
    job: dict[str, Any] | None = None
    max_send_lag: float = 0.0  # how far the generator fell behind its schedule


async def _request(client: httpx.AsyncClient, user_id: str, started: float) -> Sample:
    sent = time.perf_counter()
    try:
        response = await client.get(USER_PATH.format(user_id))
        latency = time.perf_counter() - sent
        version = None
        error = None
        if response.status_code == 200:
            version = response.json().get("model_version")
            if not isinstance(version, str):
                version, error = None, "no model_version in the response"
        else:
            error = response.text[:200]
        return Sample(sent - started, latency, response.status_code, version, error)
    except httpx.HTTPError as exc:
        return Sample(sent - started, time.perf_counter() - sent, 0, None, repr(exc))


async def _ping(client: httpx.AsyncClient) -> None:
    (await client.get("/ready")).raise_for_status()


async def _refresh(
    client: httpx.AsyncClient, run: LoadRun, api_key: str, started: float, poll: float
) -> None:
    headers = {"X-API-Key": api_key}
    run.refresh_posted = time.perf_counter() - started
    job = (await client.post(REFRESH_PATH, headers=headers)).raise_for_status().json()
    while job["state"] == "running":
        await asyncio.sleep(poll)
        response = await client.get(f"{REFRESH_PATH}/{job['job_id']}", headers=headers)
        job = response.raise_for_status().json()
    run.training_ended = time.perf_counter() - started
    run.job = job


async def run_load(
    base_url: str,
    *,
    api_key: str,
    rate: float,
    duration: float,
    refresh_at: float | None,
    user_ids: list[str],
    seed: int = 1,
    max_connections: int = 200,
    tail_after_training: float = 0.0,
    warmup_requests: int = 200,
    drain_seconds: float = 120,
) -> LoadRun:
    """Requests at `rate` per second over random `user_ids` for `duration` seconds, and on until the
    refresh started at `refresh_at` has finished plus `tail_after_training` seconds (at most
    `drain_seconds` past `duration`)."""
    rng = random.Random(seed)
    run = LoadRun(rate=rate, duration=duration)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10) as client,
        httpx.AsyncClient(base_url=base_url, timeout=10) as admin,
    ):
        # Connections opened and first-request work done before the clock starts.
        for _ in range(warmup_requests // 10):
            await asyncio.gather(
                *(_request(client, rng.choice(user_ids), 0.0) for _user in range(10)), _ping(admin)
            )
        started = time.perf_counter()
        pending: list[asyncio.Task[Sample]] = []
        refresh: asyncio.Task[None] | None = None
        for n in itertools.count():
            due = n / rate
            if due >= duration and (
                refresh is None
                or due >= duration + drain_seconds
                or (
                    run.training_ended is not None
                    and due >= run.training_ended + tail_after_training
                )
            ):
                break
            if refresh is None and refresh_at is not None and due >= refresh_at:
                refresh = asyncio.create_task(_refresh(admin, run, api_key, started, 0.2))
            delay = started + due - time.perf_counter()
            run.max_send_lag = max(run.max_send_lag, -delay)
            await asyncio.sleep(max(delay, 0))  # behind schedule or not, let the answers in
            pending.append(asyncio.create_task(_request(client, rng.choice(user_ids), started)))
        run.samples = list(await asyncio.gather(*pending))
        if refresh is not None:
            await asyncio.wait_for(refresh, drain_seconds)
    run.samples.sort(key=lambda s: s.sent)
    return run


# --- the report


def p99_ms(samples: list[Sample]) -> float | None:
    if not samples:
        return None
    return float(np.percentile([s.latency for s in samples], 99) * 1000)


def summarize(run: LoadRun) -> dict[str, Any]:
    """Counts, versions and latency by phase: idle (sent before the refresh), training (sent while
    the job ran) and after."""
    samples = run.samples
    served = [s for s in samples if not s.failed]
    versions: dict[str, int] = {}
    for s in served:
        versions[s.version] = versions.get(s.version, 0) + 1
    first = served[0].version if served else None
    new = [s for s in served if s.version != first]
    posted = run.refresh_posted if run.refresh_posted is not None else float("inf")
    ended = run.training_ended if run.training_ended is not None else float("inf")
    idle = [s for s in samples if s.sent < posted]
    training = [s for s in samples if posted <= s.sent < ended]
    after = [s for s in samples if s.sent >= ended]
    idle_p99, training_p99 = p99_ms(idle), p99_ms(training)
    last = samples[-1].sent if samples else 0.0
    return {
        "rate": run.rate,
        "duration": run.duration,
        "requests": len(samples),
        "achieved_rate": len(samples) / last if last else 0.0,
        "max_send_lag_ms": run.max_send_lag * 1000,
        "failed": len(samples) - len(served),
        "failures": [asdict(s) for s in samples if s.failed][:10],
        "versions": versions,
        "first_version": first,
        "swap_at": min((s.answered for s in new), default=None),
        "refresh_posted_at": run.refresh_posted,
        "training_ended_at": run.training_ended,
        "training_seconds": (
            run.training_ended - run.refresh_posted
            if run.training_ended is not None and run.refresh_posted is not None
            else None
        ),
        "job": run.job,
        "requests_idle": len(idle),
        "requests_training": len(training),
        "p50_ms": float(np.percentile([s.latency for s in samples], 50) * 1000)
        if samples
        else None,
        "idle_p99_ms": idle_p99,
        "training_p99_ms": training_p99,
        "after_p99_ms": p99_ms(after),
        "ratio": training_p99 / idle_p99 if idle_p99 and training_p99 is not None else None,
    }


def misses_target(summary: dict[str, Any]) -> list[str]:
    misses = []
    if summary["failed"]:
        misses.append(f"{summary['failed']} failed requests")
    if len(summary["versions"]) != 2:
        misses.append(f"versions served: {sorted(summary['versions'])} (expected old and new)")
    if summary["ratio"] is None or summary["ratio"] > TARGET_RATIO:
        misses.append(f"p99 while training / idle p99 = {summary['ratio']} > {TARGET_RATIO}")
    return misses


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(summary: dict[str, Any]) -> None:
    rows = [
        ("requests (achieved rate)", f"{summary['requests']} ({summary['achieved_rate']:.1f}/s)"),
        ("failed", str(summary["failed"])),
        ("versions served", ", ".join(f"{v}: {n}" for v, n in summary["versions"].items())),
        ("refresh posted at s", _fmt(summary["refresh_posted_at"])),
        ("training ended at s", _fmt(summary["training_ended_at"])),
        ("new version first served at s", _fmt(summary["swap_at"])),
        ("job", f"{(summary['job'] or {}).get('state')}: {(summary['job'] or {}).get('detail')}"),
        ("p50 ms (all)", _fmt(summary["p50_ms"], 2)),
        (f"idle p99 ms ({summary['requests_idle']} req)", _fmt(summary["idle_p99_ms"], 2)),
        (
            f"training p99 ms ({summary['requests_training']} req)",
            _fmt(summary["training_p99_ms"], 2),
        ),
        ("after p99 ms", _fmt(summary["after_p99_ms"], 2)),
        (f"ratio (target ≤ {TARGET_RATIO})", _fmt(summary["ratio"], 2)),
        ("generator max lag ms", _fmt(summary["max_send_lag_ms"], 1)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def append_to_docs(summary: dict[str, Any]) -> None:
    row = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {machine()} | {summary['rate']:g} | {summary['duration']:g}"
        f" | {summary['requests']:,} | {summary['failed']} | {len(summary['versions'])}"
        f" | {_fmt(summary['idle_p99_ms'], 2)} | {_fmt(summary['training_p99_ms'], 2)}"
        f" | {_fmt(summary['ratio'], 2)} | {_fmt(summary['swap_at'])}"
        f" | {_fmt(summary['training_seconds'])} |"
    )
    intro = __doc__.split("\n\n")[0].replace("\n", " ")
    add_table_rows(SECTION, intro, TABLE_HEADER, [row])


def main(arguments: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="finverse-lifecycle-") as workdir:
        root = Path(workdir)
        settings = world_settings(root, model_poll_seconds=arguments.poll_seconds)
        print("seeding the demo world and training the first model …", file=sys.stderr)
        prepare_world(
            settings,
            seed=arguments.seed,
            users=arguments.users,
            products=arguments.products,
            events=arguments.events,
        )
        user_ids = [f"user_{n:05d}" for n in range(1, arguments.users + 1)]
        with ServeProcess(settings, root / "serve.log") as server:
            print(
                f"load: {arguments.rate:g} req/s for {arguments.duration:g}s on {server.url},"
                f" refresh at {arguments.refresh_at:g}s …",
                file=sys.stderr,
            )
            # uvloop, as `serve` uses: the generator's own overhead must not pass for latency.
            run = uvloop.run(
                run_load(
                    server.url,
                    api_key=BENCH_API_KEY,
                    rate=arguments.rate,
                    duration=arguments.duration,
                    refresh_at=arguments.refresh_at,
                    user_ids=user_ids,
                    tail_after_training=arguments.tail,
                )
            )
    summary = summarize(run)
    print_table(summary)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": {"ratio": TARGET_RATIO, "failed": 0, "versions": 2},
            "world": {
                "users": arguments.users,
                "products": arguments.products,
                "events": arguments.events,
            },
            "summary": summary,
        }
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    if not arguments.no_docs:
        append_to_docs(summary)
    return verdict(misses_target(summary), arguments.check)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--refresh-at", type=float, default=20, help="seconds into the load")
    parser.add_argument(
        "--tail", type=float, default=5, help="seconds of load kept up after training ends"
    )
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="model poll interval")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=240)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_arguments()))
