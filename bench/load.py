"""Training load at scale: every interaction from each store into the pipeline's matrices, timed.

For each store the same synthetic interactions (all seven types, a skewed product popularity,
demographics per user) are inserted first; then a fresh process opens the store, streams `scan()`
batch by batch into the pipeline's `TrainingDataBuilder` and builds the matrices, reporting the
seconds (scan and pipeline apart) and its peak RSS. A fresh process, so the peak is the load's own
and not the generator's.

Variants:
  stream   what training should do: each scanned batch goes straight into the builder
  collect  what `service.training.load_training_data` does today: every batch in a list first

`--compare REF --rounds N` loads the same store with a git ref's code too (checked out into a
temporary worktree), in fresh processes taking turns, and reports the median of each; rows of the
ref are labelled `variant @REF`.

Stores: SQLite (a file in a temporary directory) and MongoDB, either --mongo-url or the nx-27017
wire-protocol stand-in started here on a free port. The stand-in is a Python process and far slower
than MongoDB, so it gets --mongo-events (default 100,000) and its rows are labelled with their size.
Target (issue): SQLite 1,000,000 rows → matrices in ≤ 15 s with peak RSS ≤ 1.5 GB; --check exits 1
when the SQLite stream variant misses it. The run writes --json, prints a table and appends a row to
docs/BENCHMARKS.md (skip with --no-docs).

    .venv/bin/python bench/load.py --events 1000000 --json bench/results/load.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from finverse_reco.events import Demographics, EventData, EventType, InteractionEvent
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.pipeline.training_data import TrainingDataBuilder
from finverse_reco.products import Product
from finverse_reco.store import open_store
from finverse_reco.store.migrate import migrate
from reporting import ROOT, add_table_rows, checked_out, machine, verdict  # bench/reporting.py
from stand_in import MongoStandIn  # bench/stand_in.py

SECTION = "## Training load (bench/load.py)"
TABLE_HEADER = (
    "| date | machine | store | variant | rows | total s | scan s | pipeline s | peak RSS MB"
    " | users × items |\n|---|---|---|---|---|---|---|---|---|---|"
)
TARGET_SECONDS = 15.0
TARGET_PEAK_MB = 1536.0
VARIANTS = ("stream", "collect")

# Shares close to the demo world's: mostly views, few submitted applications.
TYPE_SHARES = {
    EventType.PRODUCT_VIEW: 0.57,
    EventType.PRODUCT_CLICK: 0.15,
    EventType.SEARCH: 0.10,
    EventType.COMPARISON: 0.08,
    EventType.FAVORITE: 0.05,
    EventType.APPLICATION_START: 0.04,
    EventType.APPLICATION_SUBMIT: 0.01,
}
CATEGORIES = ("credit_card", "savings_account", "mortgage", "personal_loan", "investment_fund")
INSTITUTIONS = ("Northwind Bank", "Banque Alpine", "Great Lakes Savings", "Harbor Credit Union")
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
INCOME_RANGES = ("0-25k", "25k-50k", "50k-75k", "75k-100k", "100k+")
LOCATIONS = ("northeast", "midwest", "south", "mountain", "pacific")
QUERIES = ("travel card", "mortgage rates", "high yield savings", "index fund", "car loan")
WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class LoadResult:
    store: str
    variant: str
    rows: int
    insert_seconds: float
    total_seconds: float
    scan_seconds: float
    pipeline_seconds: float
    baseline_rss_mb: float
    peak_rss_mb: float
    users: int
    items: int
    interactions_nnz: int


# --- synthetic data


def synthetic_products(count: int) -> list[Product]:
    return [
        Product(
            id=f"prod_{n:04d}",
            name=f"Product {n}",
            category=CATEGORIES[n % len(CATEGORIES)],
            institution=INSTITUTIONS[n % len(INSTITUTIONS)],
            interest_rate=round(0.5 + (n * 37 % 100) / 10, 2),
            annual_fee=float(n * 13 % 200),
            risk_level=1 + n % 5,
            term_months=12 * (1 + n % 10),
        )
        for n in range(count)
    ]


def synthetic_events(
    total: int, n_products: int, *, seed: int = 7, chunk: int = 50_000
) -> Iterator[list[InteractionEvent]]:
    """`total` valid events in chunks; draws are vectorised, objects built without re-validation."""
    rng = np.random.default_rng(seed)
    n_users = max(100, total // 20)
    demographics = [
        Demographics.model_construct(
            age_group=AGE_GROUPS[a], income_range=INCOME_RANGES[i], location=LOCATIONS[loc]
        )
        for a, i, loc in zip(
            rng.integers(0, len(AGE_GROUPS), n_users).tolist(),
            rng.integers(0, len(INCOME_RANGES), n_users).tolist(),
            rng.integers(0, len(LOCATIONS), n_users).tolist(),
            strict=True,
        )
    ]
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.9
    popularity /= popularity.sum()
    types = list(TYPE_SHARES)
    shares = np.array(list(TYPE_SHARES.values()))
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    start = end - WINDOW
    window_ms = int(WINDOW.total_seconds() * 1000)
    for first in range(0, total, chunk):
        n = min(chunk, total - first)
        users = rng.integers(0, n_users, n).tolist()
        kinds = rng.choice(len(types), n, p=shares).tolist()
        products = rng.choice(n_products, (n, 3), p=popularity).tolist()
        offsets = rng.integers(0, window_ms, n).tolist()
        durations = np.round(rng.exponential(30.0, n), 1).tolist()
        sessions = rng.integers(0, 8, n).tolist()
        extras = rng.integers(0, 1 << 16, n).tolist()
        events = []
        for k in range(n):
            kind, user, picked, extra = types[kinds[k]], users[k], products[k], extras[k]
            if kind is EventType.SEARCH:
                data = EventData.model_construct(
                    query=QUERIES[extra % len(QUERIES)],
                    category=CATEGORIES[extra % len(CATEGORIES)],
                    userDemographics=demographics[user],
                )
            elif kind is EventType.COMPARISON:
                data = EventData.model_construct(
                    productIDs=[f"prod_{p:04d}" for p in picked[: 2 + extra % 2]],
                    category=CATEGORIES[picked[0] % len(CATEGORIES)],
                    userDemographics=demographics[user],
                )
            else:
                data = EventData.model_construct(
                    productId=f"prod_{picked[0]:04d}",
                    category=CATEGORIES[picked[0] % len(CATEGORIES)],
                    institution=INSTITUTIONS[picked[0] % len(INSTITUTIONS)],
                    viewDuration=durations[k] if kind is EventType.PRODUCT_VIEW else None,
                    userDemographics=demographics[user],
                )
            events.append(
                InteractionEvent.model_construct(
                    event_id=f"load-{seed}-{first + k}",
                    user_id=f"user_{user:06d}",
                    session_id=f"sess_{user:06d}_{sessions[k]}",
                    type=kind,
                    timestamp=start + timedelta(milliseconds=offsets[k]),
                    data=data,
                )
            )
        yield events


async def fill(url: str, total: int, n_products: int, insert_batch: int) -> float:
    if not (await migrate(url)).ok:
        raise RuntimeError(f"{url}: migrate failed")
    store = open_store(url, timeout_ms=10_000)
    await store.open()
    started = time.perf_counter()
    try:
        for chunk in synthetic_events(total, n_products):
            for at in range(0, len(chunk), insert_batch):
                await store.insert_many(chunk[at : at + insert_batch])
        stored = await store.count()
    finally:
        await store.close()
    if stored != total:
        raise RuntimeError(f"{url}: stored {stored} interactions, expected {total}")
    return time.perf_counter() - started


# --- the measured load (runs in a fresh process: see `measure_in_fresh_process`)


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux, VmHWM: ru_maxrss survives exec, so a child
    would report its parent's peak at fork time."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def load_into_matrices(
    url: str, variant: str, batch_size: int, n_products: int
) -> dict[str, Any]:
    products = synthetic_products(n_products)
    baseline = peak_rss_mb()
    store = open_store(url, timeout_ms=10_000)
    await store.open()
    builder = TrainingDataBuilder(WeightingConfig())
    scan_seconds = pipeline_seconds = 0.0
    started = time.perf_counter()
    try:
        batches = aiter(store.scan(batch_size=batch_size))
        collected = []
        while True:
            before = time.perf_counter()
            batch = await anext(batches, None)
            scan_seconds += time.perf_counter() - before
            if batch is None:
                break
            before = time.perf_counter()
            if variant == "collect":
                collected.append(batch)
            else:
                builder.add(batch)
            pipeline_seconds += time.perf_counter() - before
    finally:
        await store.close()
    before = time.perf_counter()
    for batch in collected:
        builder.add(batch)
    data = builder.build(products)
    pipeline_seconds += time.perf_counter() - before
    return {
        "total_seconds": time.perf_counter() - started,
        "scan_seconds": scan_seconds,
        "pipeline_seconds": pipeline_seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "rows": data.counts["documents"],
        "users": len(data.users),
        "items": len(data.items),
        "interactions_nnz": int(data.interactions.nnz),
    }


def measure_in_fresh_process(
    url: str, variant: str, batch_size: int, n_products: int, tree: Path = ROOT
) -> dict[str, Any]:
    """The load in a fresh process, running `tree`'s code (this tree, or a ref's checkout)."""
    command = [sys.executable, str(tree / "bench" / "load.py"), "--measure", url]
    command += [
        "--variant",
        variant,
        "--batch-size",
        str(batch_size),
        "--products",
        str(n_products),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the load of {url} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report


def print_table(results: list[LoadResult]) -> None:
    header = (
        f"{'store':<22} {'variant':<8} {'rows':>10} {'insert s':>9} {'total s':>8} {'scan s':>7}"
        f" {'pipeline s':>10} {'peak MB':>8} {'users × items':>15}"
    )
    print(header)
    for r in results:
        print(
            f"{r.store:<22} {r.variant:<8} {r.rows:>10,} {r.insert_seconds:>9.1f}"
            f" {r.total_seconds:>8.2f} {r.scan_seconds:>7.2f} {r.pipeline_seconds:>10.2f}"
            f" {r.peak_rss_mb:>8.0f} {f'{r.users:,} × {r.items:,}':>15}"
        )


def append_to_docs(results: list[LoadResult]) -> None:
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    rows = [
        f"| {today} | {machine()} | {r.store} | {r.variant} | {r.rows:,} | {r.total_seconds:.2f}"
        f" | {r.scan_seconds:.2f} | {r.pipeline_seconds:.2f} | {r.peak_rss_mb:.0f}"
        f" | {r.users:,} × {r.items:,} |"
        for r in results
    ]
    intro = __doc__.split("\n\n")[0].replace("\n", " ")
    add_table_rows(SECTION, intro, TABLE_HEADER, rows)


def misses_target(results: list[LoadResult]) -> list[str]:
    misses = []
    for r in results:
        if r.store == "sqlite" and r.variant == "stream":
            if r.total_seconds > TARGET_SECONDS:
                misses.append(f"SQLite load took {r.total_seconds:.1f} s > {TARGET_SECONDS:.0f} s")
            if r.peak_rss_mb > TARGET_PEAK_MB:
                misses.append(
                    f"SQLite load peaked at {r.peak_rss_mb:.0f} MB > {TARGET_PEAK_MB:.0f}"
                )
    return misses


# --- main


def run_store(
    name: str, url: str, rows: int, arguments: argparse.Namespace, variants: list[str]
) -> list[LoadResult]:
    print(f"{name}: inserting {rows:,} interactions …", file=sys.stderr)
    insert_seconds = asyncio.run(fill(url, rows, arguments.products, arguments.insert_batch))
    trees = {"": ROOT}
    if arguments.compare_tree is not None:  # the ref first, then this tree, round after round
        trees = {f" @{arguments.compare}": arguments.compare_tree, "": ROOT}
    results = []
    for variant in variants:
        print(f"{name}: loading into matrices ({variant}) …", file=sys.stderr)
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
        for _ in range(arguments.rounds):
            for label, tree in trees.items():
                runs[label].append(
                    measure_in_fresh_process(
                        url, variant, arguments.batch_size, arguments.products, tree
                    )
                )
        for label, measured in runs.items():
            median = {k: float(np.median([m[k] for m in measured])) for k in measured[0]}
            counts = {
                k: int(measured[0][k]) for k in ("rows", "users", "items", "interactions_nnz")
            }
            results.append(
                LoadResult(
                    store=name,
                    variant=variant + label,
                    insert_seconds=insert_seconds,
                    **(median | counts),
                )
            )
    return results


def main(arguments: argparse.Namespace) -> int:
    if arguments.measure:
        measured = asyncio.run(
            load_into_matrices(
                arguments.measure, arguments.variant, arguments.batch_size, arguments.products
            )
        )
        print(json.dumps(measured))
        return 0
    variants = arguments.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variants {sorted(unknown)}: choose from {VARIANTS}")
    results: list[LoadResult] = []
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="finverse-load-"))
        arguments.compare_tree = (
            stack.enter_context(checked_out(arguments.compare)) if arguments.compare else None
        )
        sqlite_url = f"sqlite:///{Path(workdir) / 'interactions.db'}"
        results += run_store("sqlite", sqlite_url, arguments.events, arguments, variants)
        if arguments.mongo_url:
            results += run_store(
                "mongodb", arguments.mongo_url, arguments.mongo_events, arguments, variants
            )
        elif not arguments.no_mongo:
            with MongoStandIn(Path(workdir) / "mongo") as server:
                name = f"mongo stand-in ({arguments.mongo_events:,})"
                url = server.url("finverse_load")
                results += run_store(name, url, arguments.mongo_events, arguments, ["stream"])
    print_table(results)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": {"seconds": TARGET_SECONDS, "peak_rss_mb": TARGET_PEAK_MB},
            "results": [asdict(r) for r in results],
        }
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    if not arguments.no_docs:
        append_to_docs(results)
    return verdict(misses_target(results), arguments.check)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="rows for SQLite")
    parser.add_argument(
        "--mongo-events", type=int, default=100_000, help="rows for MongoDB (the stand-in is slow)"
    )
    parser.add_argument("--products", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=10_000, help="scan batch size")
    parser.add_argument("--insert-batch", type=int, default=10_000)
    parser.add_argument(
        "--variants", default="stream,collect", help=f"comma-separated, of {','.join(VARIANTS)}"
    )
    parser.add_argument(
        "--mongo-url", help="a scratch database on a real MongoDB instead of the stand-in"
    )
    parser.add_argument("--no-mongo", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument(
        "--compare", metavar="REF", help="also load with a git ref's code, rounds alternating"
    )
    parser.add_argument("--rounds", type=int, default=1, help="loads per variant (median)")
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="stream", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_arguments()))
