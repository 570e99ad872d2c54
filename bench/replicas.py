"""Three replicas sharing no disk, behind HAProxy: a refresh, a killed replica, zero failed requests.

Three real `finverse-reco serve` processes, each with its own empty model directory, share one
MongoDB-protocol store (the nx-27017 stand-in) that holds the interactions, the model versions
(GridFS), the training lease and the refresh jobs (FINVERSE_ARTIFACTS=store). HAProxy from Debian
(`scripts/ensure-services.sh` installs it) balances them round-robin, health-checks `/ready` and
retries a request whose server died. This process sends user recommendation requests to HAProxy at
a fixed rate (open loop); at `--refresh-at` it asks replica A (directly) to retrain and polls the
job on B and C; at `--kill-at` it SIGKILLs replica C and starts it again with a new empty model
directory (it downloads the active version from the store before it is ready).

Target (issue 20): 200 req/s for 60 s; the refresh through A reaches all three within the poll
interval plus 5 s; B and C answer for A's job; zero failed requests at the load balancer; every
response names one of the two versions. --check exits 1 when missed. Prints a table, writes
--json, appends a row to docs/BENCHMARKS.md (skip with --no-docs).

    .venv/bin/python bench/replicas.py --rate 200 --duration 60 --json bench/results/replicas.json

tests/integration/lifecycle/test_replicas_lb.py runs it at smoke size.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import itertools
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop

from finverse_reco.cli import migrate_store
from finverse_reco.settings import Settings
from finverse_reco.store.artifacts_mongo import MongoArtifactStore
from lifecycle import (  # bench/lifecycle.py
    BENCH_API_KEY,
    REFRESH_PATH,
    Sample,
    ServeProcess,
    _request,
    free_port,
    prepare_world,
    world_settings,
)
from reporting import add_table_rows, machine, verdict  # bench/reporting.py
from stand_in import MongoStandIn  # bench/stand_in.py

SECTION = "## Replicas without a shared disk, behind HAProxy (bench/replicas.py)"
TABLE_HEADER = (
    "| date | machine | rate req/s | s | requests | failed at LB | versions | p50 ms | p99 ms"
    " | reached A/B/C s after activation | C back after kill s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)
REPLICAS = ("a", "b", "c")
SWAP_SLACK_SECONDS = 5.0
TAIL_SECONDS = 5.0  # load kept up after the killed replica is back
MAX_EXTRA_SECONDS = 180.0
ADMIN = {"X-API-Key": BENCH_API_KEY}


def haproxy_config(port: int, servers: dict[str, int]) -> str:
    """Round robin over the replicas that pass their `/ready` check (out after three failed
    checks a second apart, back after two good ones); a request whose server failed (refused,
    reset, empty answer, 5xx) is retried on another one (GET is idempotent).

    `/ready` includes the store: when the shared store is slow, every replica's check can fail at
    once though each still answers from its model. The same replicas, unchecked, are backups, so
    then HAProxy fails open to them rather than answer 503 itself; retries still cover a dead one.
    """
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 15s",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on all-retryable-errors",
        "frontend finverse",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "backend replicas",
        "    balance roundrobin",
        "    option httpchk GET /ready",
        "    http-check expect status 200",
        "    option allbackups",
        "    default-server inter 1s fall 3 rise 2",
    ]
    lines += [f"    server {name} 127.0.0.1:{port_} check" for name, port_ in servers.items()]
    lines += [f"    server {name}-open 127.0.0.1:{port_} backup" for name, port_ in servers.items()]
    return "\n".join(lines) + "\n"


class HAProxy:
    def __init__(self, config: Path, log: Path) -> None:
        self._config, self._log_path = config, log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HAProxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        subprocess.run([binary, "-c", "-q", "-f", str(self._config)], check=True)
        self._log = self._log_path.open("w")
        self._process = subprocess.Popen(
            [binary, "-db", "-f", str(self._config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._log.close()


@dataclass(slots=True)
class Events:
    """What happened besides the steady load, in seconds since the load started."""

    job: dict[str, Any] | None = None
    refresh_posted: float | None = None
    activated_at: float | None = None  # when the store's active version changed
    reached: dict[str, float] = field(default_factory=dict)  # replica → first seen serving new
    job_seen_on: dict[str, list[str]] = field(default_factory=dict)  # replica → states answered
    killed_at: float | None = None
    back_at: float | None = None
    refresh_settled: asyncio.Event = field(default_factory=asyncio.Event)
    rss_mb: dict[str, float] = field(default_factory=dict)  # each replica's, after the load


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready_version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/ready", timeout=2).json().get("model_version")
    except (httpx.HTTPError, ValueError):
        return None


async def refresh_through_a(
    replicas: dict[str, ServeProcess],
    artifacts: MongoArtifactStore,
    events: Events,
    old: str,
    started: float,
) -> None:
    """POST the refresh to A; poll the job on B and C, the store's active version, and when each
    replica serves the new one."""
    async with httpx.AsyncClient(timeout=10, headers=ADMIN) as admin:
        events.refresh_posted = time.perf_counter() - started
        # 503: the job could not be recorded (the store busy): the documented answer to retry.
        for attempt in range(5):
            posted = await admin.post(f"{replicas['a'].url}{REFRESH_PATH}")
            if posted.status_code != 503:
                break
            await asyncio.sleep(1 + attempt)
        job = posted.raise_for_status().json()
        while job["state"] == "running" or len(events.reached) < len(REPLICAS):
            for name in ("b", "c"):
                url = f"{replicas[name].url}{REFRESH_PATH}/{job['job_id']}"
                try:
                    response = await admin.get(url)
                except httpx.TransportError:  # C may be down (killed, restarting)
                    events.job_seen_on.setdefault(name, []).append("down")
                    continue
                if response.status_code == 200:
                    job = response.json()
                    events.job_seen_on.setdefault(name, []).append(job["state"])
                else:
                    events.job_seen_on.setdefault(name, []).append(str(response.status_code))
            if events.activated_at is None and await artifacts.current() != old:
                events.activated_at = time.perf_counter() - started
            for name, replica in replicas.items():
                version = await asyncio.to_thread(ready_version, replica.url)
                if name not in events.reached and version not in (old, None):
                    events.reached[name] = time.perf_counter() - started
            if time.perf_counter() - started > events.refresh_posted + 300:
                break
            await asyncio.sleep(0.1)
        events.job = job
        events.refresh_settled.set()


async def kill_and_restart(
    replicas: dict[str, ServeProcess], name: str, settings: Settings, events: Events, started: float
) -> None:
    """After the refresh has reached every replica (so its lag is a swap, not a restart's load):
    SIGKILL one, and start it again with an empty model directory on the same port."""
    await events.refresh_settled.wait()
    victim = replicas[name]
    victim._process.kill()  # SIGKILL: connections reset mid-request
    victim._process.wait()
    events.killed_at = time.perf_counter() - started
    fresh_dir = settings.model_dir.parent / "models-after-restart"
    again = ServeProcess(
        settings.model_copy(update={"model_dir": fresh_dir}),
        victim.log_path.with_name(f"{name}-restarted.log"),
        port=victim.port,
        start_timeout=120,
    )
    await asyncio.to_thread(again.__enter__)  # returns once its /ready answers 200
    replicas[name] = again
    events.back_at = time.perf_counter() - started


async def run(
    lb_url: str,
    replicas: dict[str, ServeProcess],
    settings: dict[str, Settings],
    *,
    rate: float,
    duration: float,
    refresh_at: float,
    kill_at: float,
    user_ids: list[str],
    old: str,
    store_url: str,
) -> tuple[list[Sample], Events]:
    rng = random.Random(1)
    events = Events()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    artifacts = MongoArtifactStore.from_url(store_url, timeout_ms=10_000)
    await artifacts.open()
    async with httpx.AsyncClient(base_url=lb_url, limits=limits, timeout=15) as client:
        for _ in range(20):  # connections opened before the clock starts
            await asyncio.gather(*(_request(client, rng.choice(user_ids), 0.0) for _ in range(10)))
        started = time.perf_counter()
        pending: list[asyncio.Task[Sample]] = []
        side: list[asyncio.Task[None]] = []
        for n in itertools.count():
            due = n / rate
            # At least `duration`, and on until the killed replica has been back for a while (a
            # slow machine trains and restarts slower): the kill always falls inside the load.
            restarted = events.back_at is not None and due >= events.back_at + TAIL_SECONDS
            if due >= duration and (restarted or due >= duration + MAX_EXTRA_SECONDS):
                break
            if not side and due >= refresh_at:
                side.append(
                    asyncio.create_task(
                        refresh_through_a(replicas, artifacts, events, old, started)
                    )
                )
            if len(side) == 1 and due >= kill_at:
                side.append(
                    asyncio.create_task(
                        kill_and_restart(replicas, "c", settings["c"], events, started)
                    )
                )
            await asyncio.sleep(max(started + due - time.perf_counter(), 0))
            pending.append(asyncio.create_task(_request(client, rng.choice(user_ids), started)))
        samples = list(await asyncio.gather(*pending))
        await asyncio.gather(*side)
        events.rss_mb = {name: rss_mb(replica._process.pid) for name, replica in replicas.items()}
    await artifacts.close()
    return sorted(samples, key=lambda s: s.sent), events


def summarize(
    samples: list[Sample], events: Events, poll_seconds: float, duration: float
) -> dict[str, Any]:
    served = [s for s in samples if not s.failed]
    versions: dict[str, int] = {}
    for sample in served:
        versions[sample.version] = versions.get(sample.version, 0) + 1
    latencies = np.array([s.latency for s in samples]) * 1000 if samples else np.zeros(1)
    activated = events.activated_at
    lags = {
        name: (at - activated if activated is not None else None)
        for name, at in sorted(events.reached.items())
    }
    last = samples[-1].sent if samples else 0.0
    return {
        "duration": duration,
        "load_seconds": last,
        "requests": len(samples),
        "achieved_rate": len(samples) / last if last else 0.0,
        "failed": len(samples) - len(served),
        "failures": [
            {"sent": s.sent, "status": s.status, "error": s.error} for s in samples if s.failed
        ][:10],
        "failures_by_status": {
            str(status): sum(1 for s in samples if s.failed and s.status == status)
            for status in sorted({s.status for s in samples if s.failed})
        },
        "versions": versions,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "job": events.job,
        "job_seen_on": {name: sorted(set(states)) for name, states in events.job_seen_on.items()},
        "refresh_posted_at": events.refresh_posted,
        "activated_at": activated,
        "reached_after_activation_s": lags,
        "swap_limit_s": poll_seconds + SWAP_SLACK_SECONDS,
        "rss_mb": events.rss_mb,
        "killed_at": events.killed_at,
        "back_after_kill_s": (
            events.back_at - events.killed_at
            if events.back_at is not None and events.killed_at is not None
            else None
        ),
    }


def misses_target(summary: dict[str, Any]) -> list[str]:
    misses = []
    if summary["failed"]:
        misses.append(f"{summary['failed']} failed requests at the load balancer")
    if len(summary["versions"]) != 2:
        misses.append(f"versions served: {sorted(summary['versions'])} (expected old and new)")
    lags = summary["reached_after_activation_s"]
    if set(lags) != set(REPLICAS):
        misses.append(f"the new version reached only {sorted(lags)}")
    for name, lag in lags.items():
        if lag is None or lag > summary["swap_limit_s"]:
            misses.append(f"replica {name} served the new version {lag}s after activation")
    if (summary["job"] or {}).get("state") != "succeeded":
        misses.append(f"the refresh job ended {(summary['job'] or {}).get('state')}")
    for name in ("b", "c"):
        if not {"running", "succeeded"} & set(summary["job_seen_on"].get(name, [])):
            misses.append(f"replica {name} never answered for the job")
    if summary["back_after_kill_s"] is None:
        misses.append("the killed replica did not come back")
    elif summary["killed_at"] + summary["back_after_kill_s"] > summary["load_seconds"]:
        misses.append("the killed replica came back after the load ended (not mid-run)")
    return misses


def print_table(summary: dict[str, Any]) -> None:
    def fmt(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lags = summary["reached_after_activation_s"]
    rows = [
        (
            "requests (achieved rate, seconds of load)",
            f"{summary['requests']} ({summary['achieved_rate']:.1f}/s, {summary['load_seconds']:.0f} s)",
        ),
        ("failed at the load balancer", f"{summary['failed']} {summary['failures_by_status']}"),
        ("versions served", ", ".join(f"{v}: {n}" for v, n in summary["versions"].items())),
        ("p50 / p99 ms", f"{fmt(summary['p50_ms'], 2)} / {fmt(summary['p99_ms'], 2)}"),
        (
            "refresh posted / activated at s",
            f"{fmt(summary['refresh_posted_at'])} / {fmt(summary['activated_at'])}",
        ),
        (
            f"served new after activation s (limit {summary['swap_limit_s']:g})",
            ", ".join(f"{n}: {fmt(lag, 2)}" for n, lag in lags.items()),
        ),
        ("job states answered by B, C", json.dumps(summary["job_seen_on"])),
        ("job", f"{(summary['job'] or {}).get('state')}: {(summary['job'] or {}).get('detail')}"),
        (
            "C killed at s, back after s",
            f"{fmt(summary['killed_at'])}, {fmt(summary['back_after_kill_s'])}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def append_to_docs(summary: dict[str, Any], rate: float, duration: float) -> None:
    lags = summary["reached_after_activation_s"]
    reached = "/".join("-" if lags.get(n) is None else f"{lags[n]:.1f}" for n in REPLICAS)
    back = summary["back_after_kill_s"]
    row = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {machine()} | {rate:g} | {duration:g}"
        f" | {summary['requests']:,} | {summary['failed']} | {len(summary['versions'])}"
        f" | {summary['p50_ms']:.2f} | {summary['p99_ms']:.2f} | {reached}"
        f" | {'-' if back is None else f'{back:.1f}'} |"
    )
    intro = __doc__.split("\n\n")[0].replace("\n", " ")
    add_table_rows(SECTION, intro, TABLE_HEADER, [row])


def measure(
    root: Path,
    *,
    rate: float,
    duration: float,
    refresh_at: float,
    kill_at: float,
    poll_seconds: float,
    seed: int = 42,
    users: int = 2000,
    products: int = 240,
    events: int = 100_000,
    epochs: int = 20,
) -> dict[str, Any]:
    """The whole run in `root`; returns the summary (also what the test asserts on)."""
    with MongoStandIn(root / "mongo") as mongo:
        base = world_settings(
            root / "world",
            store_url=mongo.url("finverse_replicas"),
            artifacts="store",
            model_poll_seconds=poll_seconds,
            model_threads=1,
            model_epochs=epochs,
            model_max_precision_drop=1.0,
            training_lease_seconds=30,
            # The stand-in answers nothing else while it works through a large write (its
            # heartbeats included): longer timeouts than a real server needs.
            store_timeout_ms=10_000,
            store_worker_timeout_ms=120_000,
        )
        if asyncio.run(migrate_store(base, check_only=False)) != 0:
            raise RuntimeError("migrate failed")
        print("seeding the store and training the first model into it …", file=sys.stderr)
        prepare_world(base, seed=seed, users=users, products=products, events=events)
        settings = {
            name: base.model_copy(update={"model_dir": root / name / "models"}) for name in REPLICAS
        }
        replicas: dict[str, ServeProcess] = {}
        try:
            for name in REPLICAS:
                (root / name).mkdir()
                replicas[name] = ServeProcess(
                    settings[name], root / name / "serve.log", start_timeout=120
                ).__enter__()
            old = ready_version(replicas["a"].url)
            assert old is not None and all(ready_version(r.url) == old for r in replicas.values())
            lb_port = free_port()
            config = root / "haproxy.cfg"
            ports = {name: replica.port for name, replica in replicas.items()}
            config.write_text(haproxy_config(lb_port, ports))
            with HAProxy(config, root / "haproxy.log"):
                lb_url = f"http://127.0.0.1:{lb_port}"
                deadline = time.monotonic() + 20
                while ready_version(lb_url) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("HAProxy did not answer")
                    time.sleep(0.2)
                print(
                    f"load: {rate:g} req/s for {duration:g}s through HAProxy; refresh via A at"
                    f" {refresh_at:g}s, C killed at {kill_at:g}s …",
                    file=sys.stderr,
                )
                samples, happened = uvloop.run(
                    run(
                        lb_url,
                        replicas,
                        settings,
                        rate=rate,
                        duration=duration,
                        refresh_at=refresh_at,
                        kill_at=kill_at,
                        user_ids=[f"user_{n:05d}" for n in range(1, users + 1)],
                        old=old,
                        store_url=base.store_url,
                    )
                )
        finally:
            for replica in replicas.values():
                replica.__exit__()
    return summarize(samples, happened, poll_seconds, duration)


def main(arguments: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="finverse-replicas-") as workdir:
        summary = measure(
            Path(workdir),
            rate=arguments.rate,
            duration=arguments.duration,
            refresh_at=arguments.refresh_at,
            kill_at=arguments.kill_at,
            poll_seconds=arguments.poll_seconds,
            seed=arguments.seed,
            users=arguments.users,
            products=arguments.products,
            events=arguments.events,
            epochs=arguments.epochs,
        )
    print_table(summary)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "arguments": {k: str(v) for k, v in vars(arguments).items()},
            "summary": summary,
        }
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    if not arguments.no_docs:
        append_to_docs(summary, arguments.rate, arguments.duration)
    return verdict(misses_target(summary), arguments.check)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--refresh-at", type=float, default=10, help="seconds into the load")
    parser.add_argument("--kill-at", type=float, default=35, help="seconds into the load")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="model poll interval")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=240)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (each refresh)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_arguments()))
