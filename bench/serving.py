"""Serving performance: the real service under load, in-process top-k, and the memory of a big model.

Subcommands (`all`, the default, runs them all in one run and appends to docs/BENCHMARKS.md):

  http    For each synthetic catalog (1,000 / 10,000 / 100,000 products, 100,000 users, 50 dims) a
          generated index is saved and activated like a trained one; `bench/_serve_with_ceiling.py`
          (the real app under uvicorn with uvloop and httptools, plus `/bench/ceiling/{id}`) serves it
          with one worker, then two; `wrk` (one thread, 32 connections, random ids from a Lua
          `request()`) drives the ceiling, the user, the session and the similar-products
          endpoints in turn, for several rounds. Reports the median over rounds of requests/s and
          p50/p99/p99.9, all errors, and the server's RSS (all processes) before and after.
  cpu     The same app in-process (ASGI, no sockets, no load generator), 32 requests at once,
          caches evicted between batches: the process's CPU per request of each endpoint beside
          the ceiling's. It does not depend on other load on the machine, which `wrk`'s req/s
          here does; the share it implies is a cross-check of the `http` ratio, not a target.
  topk    In-process, CPU time per call: `EmbeddingIndex.rank` against the naive path,
          `LightFM.predict` over every item with the feature layout training builds (identity plus
          the pipeline's side features) then a full sort, on the same LightFM weights.
  memory  RSS of the serving process with 1,000,000 users × 50 dims, above the same process with
          no model (the empty-process baseline).

Variants (`http`): `--variant NAME[:KEY=VALUE,...]`, repeatable, serves the same world from several
server configurations at once and lets their rounds alternate, so a comparison shares the machine's
moments: `tree=REF` serves the code of a git ref (checked out into a temporary worktree), any other
key is a setting (`FINVERSE_POLICY_FILE=...`). Each variant's req/s and p99 are reported beside the
first variant's, as a ratio; `--min-ratio R` makes `--check` require req/s ≥ R × the first's.

    .venv/bin/python bench/serving.py http --variant before:tree=e2dadb6 --variant after
    # the audit trail's cost (docs/ACCOUNTABILITY.md): on must keep ≥ 90% of off's req/s
    .venv/bin/python bench/serving.py http --sizes 1000 --workers 1 \
        --variant audit-off:FINVERSE_AUDIT_ENABLED=false --variant audit-on --min-ratio 0.9 --check

The policy step (issue 15), off against on, side by side at 1,000 and 100,000 products, one
worker; `--check --min-ratio 0.9` requires on ≥ 90% of off's req/s:

    .venv/bin/python bench/serving.py http --sizes 1000 100000 --workers 1 \
        --variant policy-off:FINVERSE_POLICY_ENABLED=false --variant policy-on \
        --min-ratio 0.9 --check

The cost of the per-item reasons (docs/REASONS.md): the tree before them against this one, e.g.
`--variant main:tree=<main before issue 15 reasons> --variant reasons --sizes 1000 100000`. The
synthetic index carries feature rows (category, institution, risk; age group, income), so the
reasons split scores as they do on a trained model.

`--feedback` gives every world what experiments and contact limits work on (docs/FEEDBACK.md): a
second model version and `experiments.json` splitting customers 50/50 between the two versions,
and impressions, clicks and dismissals for `FEEDBACK_USERS` of the customers (some over their
contact limit). The experiment serves only where a variant names the file. Contact limits and
dismissals are rules of the policy file (docs/POLICY.md): every world also gets
`rules-without-contact.toml`, the shipped rules without them, for a variant to name. Everything
off (no policy, no experiment) against everything on (the shipped rules, the experiment):

    .venv/bin/python bench/serving.py http --feedback --sizes 1000 100000 --min-ratio 0.85 \
        --variant all-off:FINVERSE_POLICY_ENABLED=false \
        --variant all-on:FINVERSE_EXPERIMENTS_FILE=experiments.json
    # the contact rules' own cost: the policy without them against the shipped one
    .venv/bin/python bench/serving.py http --feedback --sizes 1000 \
        --variant no-contact:FINVERSE_POLICY_FILE=rules-without-contact.toml --variant contact

Acceptance (the issue), checked by `--check`: one worker at 1,000 products, user endpoint ≥ 70% of
the ceiling's requests/s and p99 ≤ 2× the ceiling's; 100,000 products, user p99 ≤ 25 ms; top-k
≥ 10× the naive path at 10,000 products; 1,000,000 users in ≤ 400 MB above the empty process.
The machine is shared: compare the rows of one run (ratios), and read absolute numbers with the
load average printed beside them.

    .venv/bin/python bench/serving.py all --json bench/results/serving.json
    .venv/bin/python bench/serving.py http --sizes 1000 --duration 5 --no-docs   # smoke
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp
import uvloop

from _serve_with_ceiling import build as build_app  # bench/_serve_with_ceiling.py
from finverse_reco.catalog.local import write_catalog_file
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import EventData, EventType, InteractionEvent
from finverse_reco.index import EmbeddingIndex
from finverse_reco.model.artifacts import activate, save_version
from finverse_reco.observability import configure_logging
from finverse_reco.pipeline.features import FeatureConfig, item_side_features
from finverse_reco.policy import DEFAULT_RULES_FILE, load_rules
from finverse_reco.products import Product
from finverse_reco.store import open_store
from reporting import add_to_section, checked_out, machine  # bench/reporting.py

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "_serve_with_ceiling.py"
SECTION = "## Serving (bench/serving.py)"
DIM = 50
CATEGORIES = ("loans", "credit_cards", "savings", "mortgages", "insurance", "investments")
CREDIT = frozenset({"loans", "credit_cards", "mortgages"})
INSTITUTIONS = tuple(f"bank_{n}" for n in range(12))
SEEN_PER_USER = 5
RISK_LEVELS = (1, 2, 3, 4, 5)
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
INCOMES = ("0-25k", "25k-50k", "50k-75k", "75k-100k", "100k-150k", "150k+")
SESSIONS = 2_000
EVENTS_PER_SESSION = 4
FEEDBACK_USERS = 20_000  # at most; the first customers by row
ENDPOINTS = ("ceiling", "user", "session", "similar")


@dataclass(frozen=True)
class Variant:
    """One server configuration: this tree or a git ref's (`tree`), plus settings."""

    name: str
    tree: str | None = None
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, spec = text.partition(":")
        pairs = dict(item.split("=", 1) for item in spec.split(",") if item)
        return cls(name, pairs.pop("tree", None), pairs)


@contextmanager
def variant_sources(variants: list[Variant]):
    """{variant name: the tree whose code it serves}: this tree, or a temporary worktree per ref."""
    with ExitStack() as stack:
        yield {
            v.name: ROOT if v.tree is None else stack.enter_context(checked_out(v.tree))
            for v in variants
        }


# --- synthetic model -----------------------------------------------------------------------------


def user_id(row: int) -> str:
    return f"user_{row:07d}"


def item_id(row: int) -> str:
    return f"prod_{row:06d}"


def synthetic_index(
    n_items: int,
    n_users: int,
    *,
    dim: int = DIM,
    seed: int = 0,
    item_matrix: np.ndarray | None = None,
    user_vectors: np.ndarray | None = None,
) -> EmbeddingIndex:
    """A serving index as training would build one: clustered float32 embeddings (items and users
    drawn around shared centres), item biases, categories, institutions, a skewed popularity and
    `SEEN_PER_USER` training items per user. Given arrays (e.g. a LightFM model's) are used as is."""
    rng = np.random.default_rng(seed)
    n_clusters = 32
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    item_cluster = rng.integers(0, n_clusters, n_items)
    if item_matrix is None:
        item_matrix = np.empty((n_items, dim + 1), dtype=np.float32)
        item_matrix[:, :dim] = centres[item_cluster]
        item_matrix[:, :dim] += 0.7 * rng.standard_normal((n_items, dim), dtype=np.float32)
        item_matrix[:, :dim] /= np.sqrt(dim)
        item_matrix[:, dim] = 0.1 * rng.standard_normal(n_items, dtype=np.float32)
    if user_vectors is None:
        user_vectors = centres[rng.integers(0, n_clusters, n_users)]
        user_vectors += 0.7 * rng.standard_normal((n_users, dim), dtype=np.float32)
        user_vectors /= np.sqrt(dim)
    seen = np.sort(rng.integers(0, n_items, (n_users, SEEN_PER_USER)), axis=1).astype(np.int32)
    popularity = (1.0 / np.arange(1, n_items + 1) ** 0.9).astype(np.float32)
    rng.shuffle(popularity)
    categories = (item_cluster % len(CATEGORIES)).astype(np.int32)
    institutions = (np.arange(n_items) % len(INSTITUTIONS)).astype(np.int32)
    # Feature rows as training keeps them (the reasons split scores over them): each item its
    # category, institution and risk level; each user an age group and an income range.
    item_feature_names = [
        *(f"category:{c}" for c in CATEGORIES),
        *(f"institution:{i}" for i in INSTITUTIONS),
        *(f"risk_level:{r}" for r in RISK_LEVELS),
    ]
    item_features = np.column_stack(
        [
            categories,
            len(CATEGORIES) + institutions,
            len(CATEGORIES) + len(INSTITUTIONS) + np.arange(n_items) % len(RISK_LEVELS),
        ]
    )
    user_feature_names = [
        *(f"age_group:{a}" for a in AGE_GROUPS),
        *(f"income_range:{i}" for i in INCOMES),
    ]
    user_features = np.column_stack(
        [
            rng.integers(0, len(AGE_GROUPS), n_users),
            len(AGE_GROUPS) + rng.integers(0, len(INCOMES), n_users),
        ]
    )
    return EmbeddingIndex(
        users=[user_id(r) for r in range(n_users)],
        items=[item_id(r) for r in range(n_items)],
        user_vectors=user_vectors,
        item_matrix=item_matrix,
        user_feature_names=user_feature_names,
        user_feature_embeddings=rng.standard_normal((len(user_feature_names), dim)) / np.sqrt(dim),
        user_feature_biases=np.zeros(len(user_feature_names), np.float32),
        item_feature_names=item_feature_names,
        item_feature_embeddings=rng.standard_normal((len(item_feature_names), dim)) / np.sqrt(dim),
        item_feature_biases=np.zeros(len(item_feature_names), np.float32),
        user_feature_indptr=np.arange(0, 2 * n_users + 1, 2, dtype=np.int64),
        user_feature_indices=user_features.ravel(),
        user_feature_weights=np.full(2 * n_users, 0.5, np.float32),
        item_feature_indptr=np.arange(0, 3 * n_items + 1, 3, dtype=np.int64),
        item_feature_indices=item_features.ravel(),
        item_feature_weights=np.full(3 * n_items, 1 / 3, np.float32),
        item_categories=categories,
        category_names=CATEGORIES,
        item_institutions=institutions,
        institution_names=INSTITUTIONS,
        popularity=popularity,
        segment_keys=(),
        segment_popularity=np.zeros((0, n_items), np.float32),
        seen_indptr=np.arange(0, n_users * SEEN_PER_USER + 1, SEEN_PER_USER, dtype=np.int64),
        seen_indices=seen.ravel(),
        params={"synthetic": {"seed": seed, "clusters": n_clusters}},
    )


def synthetic_products(index: EmbeddingIndex) -> list[Product]:
    return [
        Product(
            id=pid,
            name=f"Product {row}",
            category=CATEGORIES[int(index.item_categories[row])],
            institution=INSTITUTIONS[int(index.item_institutions[row])],
            interest_rate=round(0.5 + (row * 37 % 100) / 10, 2),
            annual_fee=float(row * 13 % 200),
            risk_level=RISK_LEVELS[row % len(RISK_LEVELS)],
            term_months=12 * (1 + row % 10),
            # Eligibility facts, so the policy step has real work (docs/POLICY.md).
            min_age=(18, 18, 21, 25)[row % 4],
            min_income=(0.0, 0.0, 20e3, 50e3, 100e3)[row % 5],
            required_kyc="verified"
            if CATEGORIES[int(index.item_categories[row])] in CREDIT
            else None,
            residencies=("US",),
        )
        for row, pid in enumerate(index.items)
    ]


async def seed_customers(store_url: str, n_users: int, n_items: int, seed: int = 2) -> None:
    """A profile for every user (ages, incomes, KYC, risk profiles, a few holdings) and one
    submitted application for one user in ten: what the policy step reads per request."""
    rng = np.random.default_rng(seed)
    updated = datetime.now(UTC) - timedelta(days=1)
    ages = rng.integers(18, 85, n_users).tolist()
    incomes = rng.lognormal(11, 0.7, n_users).round(-2).tolist()
    risks = rng.integers(1, 6, n_users).tolist()
    kyc = rng.choice(["verified", "verified", "verified", "pending"], n_users).tolist()
    holdings = rng.integers(0, n_items, (n_users, 2)).tolist()
    store = open_store(store_url, timeout_ms=60_000)
    await store.open()
    try:
        for start in range(0, n_users, 1_000):
            await asyncio.gather(
                *(
                    store.put_profile(
                        CustomerProfile(
                            user_id=user_id(row),
                            birth_year=updated.year - ages[row] - 1,
                            annual_income=incomes[row],
                            residency="US",
                            risk_profile=risks[row],
                            kyc_status=kyc[row],
                            holdings=tuple(item_id(i) for i in holdings[row]),
                            updated_at=updated,
                        )
                    )
                    for row in range(start, min(start + 1_000, n_users))
                )
            )
        applied = rng.integers(0, n_items, n_users // 10).tolist()
        await store.insert_many(
            [
                InteractionEvent(
                    event_id=f"bench-apply-{n}",
                    user_id=user_id(n * 10),
                    type=EventType.APPLICATION_SUBMIT,
                    timestamp=updated,
                    data=EventData(productId=item_id(product)),
                )
                for n, product in enumerate(applied)
            ]
        )
    finally:
        await store.close()


def session_id(n: int) -> str:
    return f"sess_{n:06d}"


async def seed_sessions(store_url: str, n_items: int, seed: int = 1) -> None:
    """`SESSIONS` browsing sessions of a few product views, so the session endpoint folds in."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, (SESSIONS, EVENTS_PER_SESSION)).tolist()
    start = datetime.now(UTC) - timedelta(hours=1)
    events = [
        InteractionEvent(
            event_id=f"bench-{s}-{k}",
            user_id=f"visitor_{s:06d}",
            session_id=session_id(s),
            type=EventType.PRODUCT_VIEW,
            timestamp=start + timedelta(seconds=k),
            data=EventData(productId=item_id(items[s][k]), viewDuration=20.0),
        )
        for s in range(SESSIONS)
        for k in range(EVENTS_PER_SESSION)
    ]
    store = open_store(store_url, timeout_ms=10_000)
    await store.open()
    try:
        await store.insert_many(events)
    finally:
        await store.close()


CONTACT_RULES = ('"contact_limit"', '"dismissed"')


def write_rules_without_contact(path: Path) -> None:
    """The shipped rules file without its contact_limit and dismissed rules (and a version that
    says so): its `[[rules]]` tables of those kinds left out, the rest as written."""
    text = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    head, *tables = text.split("\n[[rules]]\n")
    kept = [t for t in tables if not any(f"kind = {k}" in t for k in CONTACT_RULES)]
    version = load_rules(DEFAULT_RULES_FILE).version
    head = head.replace(f'"{version}"', f'"{version}-without-contact"')
    path.write_text("\n[[rules]]\n".join([head, *kept]), encoding="utf-8")
    assert not {rule.kind for rule in load_rules(path).rules} & {"contact_limit", "dismissed"}


def write_experiment(path: Path, control: str, treatment: str) -> None:
    arms = [
        {"name": "control", "share": 0.5, "model_version": control},
        {"name": "treatment", "share": 0.5, "model_version": treatment},
    ]
    started = datetime.now(UTC).isoformat()
    experiment = {"id": "bench", "salt": "bench", "arms": arms, "started_at": started}
    path.write_bytes(orjson.dumps({"experiments": [experiment]}))


async def seed_feedback(store_url: str, n_items: int, n_users: int, seed: int = 2) -> None:
    """For the first FEEDBACK_USERS customers: a list of 5 products shown three times over the last
    days (every third customer clicks the first one, so it stays), and a dismissal every fifth."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    events = []
    for row in range(min(n_users, FEEDBACK_USERS)):
        user = user_id(row)
        shown = [item_id(int(i)) for i in rng.integers(0, n_items, 5)]
        for day in (3, 2, 1):
            events.append(
                InteractionEvent(
                    event_id=f"bench-shown-{row}-{day}",
                    user_id=user,
                    type=EventType.IMPRESSION,
                    recommendation_id=f"bench-{row}-{day}",
                    timestamp=now - timedelta(days=day),
                    data=EventData(productIDs=shown, channel="app_home"),
                )
            )
        kinds = [(EventType.PRODUCT_CLICK, 0)] if row % 3 == 0 else []
        kinds += [(EventType.DISMISS, 1)] if row % 5 == 0 else []
        events += [
            InteractionEvent(
                event_id=f"bench-{kind.value}-{row}",
                user_id=user,
                type=kind,
                timestamp=now - timedelta(hours=12),
                data=EventData(productId=shown[position]),
            )
            for kind, position in kinds
        ]
    store = open_store(store_url, timeout_ms=10_000)
    await store.open()
    try:
        for start in range(0, len(events), 10_000):
            await store.insert_many(events[start : start + 10_000])
    finally:
        await store.close()


# --- the server under test -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and all its descendants (uvicorn's supervisor plus its workers)."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total_kb += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        pending.extend(int(child) for child in children)
    return total_kb / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants so far (/proc/<pid>/stat)."""
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        pending.extend(int(child) for child in children)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class World:
    """A generated catalog on disk: the active model, the catalog file and a seeded store."""

    where: Path
    model_dir: Path
    catalog: Path
    store_url: str


def generate_world(n_items: int, n_users: int, workdir: Path, feedback: bool = False) -> World:
    started = time.perf_counter()
    where = workdir / f"catalog-{n_items}"
    world = World(
        where, where / "models", where / "catalog.json", f"sqlite:///{where / 'interactions.db'}"
    )
    index = synthetic_index(n_items, n_users, seed=n_items)
    control = save_version(world.model_dir, index)
    activate(world.model_dir, control)
    write_catalog_file(world.catalog, synthetic_products(index))
    write_rules_without_contact(where / "rules-without-contact.toml")
    asyncio.run(seed_sessions(world.store_url, n_items))
    asyncio.run(seed_customers(world.store_url, n_users, n_items))
    if feedback:
        time.sleep(1.0)  # version names carry the second they were made
        treatment = save_version(
            world.model_dir, synthetic_index(n_items, n_users, seed=n_items + 1)
        )
        write_experiment(where / "experiments.json", control, treatment)
        asyncio.run(seed_feedback(world.store_url, n_items, n_users))
    print(f"catalog {n_items:,}: generated in {time.perf_counter() - started:.1f}s", flush=True)
    return world


def service_settings(world: World) -> dict[str, str]:
    """FINVERSE_* settings of the service under test (no scheduled training, no model polling)."""
    return {
        "FINVERSE_MODEL_DIR": str(world.model_dir),
        "FINVERSE_CATALOG_PATH": str(world.catalog),
        "FINVERSE_STORE_URL": world.store_url,
        "FINVERSE_REFRESH_SCHEDULE": "off",
        "FINVERSE_MODEL_POLL_SECONDS": "3600",
        "OPENBLAS_NUM_THREADS": "1",
    }


@contextmanager
def served(world: World, workers: int, variant: Variant | None = None, source: Path = ROOT):
    """The runner in its own process group; yields (base url, pid) once every worker answers.
    A variant's code comes from `source` (its own `src/` and runner), its settings on top."""
    workdir = world.where
    port = free_port()
    env = {
        **os.environ,
        **service_settings(world),
        **(variant.settings if variant else {}),
        "FINVERSE_PORT": str(port),
        "FINVERSE_HOST": "127.0.0.1",
    }
    runner = RUNNER
    if source != ROOT:
        env["PYTHONPATH"] = str(source / "src")
        runner = source / "bench" / RUNNER.name
    log = (workdir / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(runner), "--workers", str(workers)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, process, workers)
        yield base, process.pid
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


def wait_until_up(base: str, process: subprocess.Popen, workers: int, timeout: float = 180) -> None:
    """Until /health answers (a worker accepts only after its lifespan loaded the model)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200 and len(_worker_pids(process.pid)) >= workers:
                    # One worker answered; give the others time to finish their start-up too.
                    time.sleep(1.0 + 2.0 * (workers - 1))
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not come up within {timeout:.0f}s")


def _worker_pids(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [int(c) for c in children] or [pid]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- load generator ------------------------------------------------------------------------------

WRK_SCRIPT = """
math.randomseed({seed})
local n = {n}
request = function()
  return wrk.format("GET", string.format("{path}", math.random(0, n - 1)))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,'
    .. '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def endpoint_paths(n_items: int, n_users: int) -> dict[str, tuple[str, int]]:
    """Endpoint → (printf path with one %d, how many ids to draw from)."""
    base = "/api/v1/recommendations"
    return {
        "ceiling": ("/bench/ceiling/user_%07d", n_users),
        "user": (f"{base}/products/user_%07d", n_users),
        "session": (f"{base}/session/sess_%06d", SESSIONS),
        "similar": (f"{base}/similar-products/prod_%06d", n_items),
    }


@dataclass
class LoadResult:
    catalog: int
    workers: int
    endpoint: str
    variant: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    server_cpu_us: float  # the server's CPU per request: the machine's other load adds none
    requests: int
    errors: int
    body_bytes: int
    rss_before_mb: float
    rss_after_mb: float
    load_average: float


def run_wrk(
    base: str, path: str, n: int, *, workdir: Path, connections: int, duration: float
) -> dict[str, Any]:
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT.format(seed=42, n=n, path=path))
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
        "-s", str(script), base,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON "))


def bench_http(
    arguments: argparse.Namespace,
    world: World,
    n_items: int,
    header: bool,
    sources: dict[str, Path],
) -> list[LoadResult]:
    where, results = world.where, []
    variants = arguments.variant
    for workers in arguments.workers:
        with ExitStack() as stack:
            servers = {
                v.name: stack.enter_context(served(world, workers, v, sources[v.name]))
                for v in variants
            }
            paths = endpoint_paths(n_items, arguments.users)
            bodies: dict[str, dict[str, int]] = {}
            for name, (base, _pid) in servers.items():
                bodies[name] = {}
                for endpoint, (path, _) in paths.items():
                    status, body = fetch(base + path % 1)
                    if status != 200:
                        raise RuntimeError(f"{name} {endpoint}: {status} {body[:200]!r}")
                    bodies[name][endpoint] = len(body)
                # Warm-up: first-touch page faults, lazy imports, connection pools.
                run_wrk(base, *paths["user"], workdir=where, connections=32, duration=2)
            # Variants and endpoints take turns, round after round, so a burst of load from
            # elsewhere on the machine hits them alike; each figure is the median of its rounds.
            rounds = {(v, e): [] for v in servers for e in ENDPOINTS}
            rss_before = {name: tree_rss_mb(pid) for name, (_, pid) in servers.items()}
            for _ in range(arguments.rounds):
                for name, (base, pid) in servers.items():
                    for endpoint in ENDPOINTS:
                        path, n = paths[endpoint]
                        cpu_before = tree_cpu_seconds(pid)
                        out = run_wrk(
                            base,
                            path,
                            n,
                            workdir=where,
                            connections=arguments.connections,
                            duration=arguments.duration,
                        )
                        out["load_average"] = os.getloadavg()[0]
                        out["cpu_us"] = (
                            (tree_cpu_seconds(pid) - cpu_before) * 1e6 / max(out["requests"], 1)
                        )
                        rounds[name, endpoint].append(out)
            batch = []
            for name, (_, pid) in servers.items():
                rss_after = tree_rss_mb(pid)
                for endpoint in ENDPOINTS:
                    result = _load_result(
                        n_items, workers, endpoint, name, rounds[name, endpoint],
                        bodies[name][endpoint],
                    )  # fmt: skip
                    result.rss_before_mb, result.rss_after_mb = rss_before[name], rss_after
                    batch.append(result)
            print_http(batch, header=header and not results)
            results.extend(batch)
    return results


def _load_result(
    n_items: int,
    workers: int,
    name: str,
    variant: str,
    rounds: list[dict[str, Any]],
    body_bytes: int,
) -> LoadResult:
    def median(key: str, scale: float = 1e-3) -> float:
        return float(np.median([r[key] for r in rounds])) * scale

    return LoadResult(
        catalog=n_items,
        workers=workers,
        endpoint=name,
        variant=variant,
        requests_per_s=float(np.median([r["requests"] / (r["duration_us"] / 1e6) for r in rounds])),
        p50_ms=median("p50_us"),
        p99_ms=median("p99_us"),
        p999_ms=median("p999_us"),
        max_ms=max(r["max_us"] for r in rounds) / 1000,
        server_cpu_us=median("cpu_us", 1.0),
        requests=sum(r["requests"] for r in rounds),
        errors=sum(r[k] for r in rounds for k in ("connect", "read", "write", "status", "timeout")),
        body_bytes=body_bytes,
        rss_before_mb=0.0,
        rss_after_mb=0.0,
        load_average=median("load_average", 1.0),
    )


def print_http(results: list[LoadResult], header: bool = True) -> None:
    if header:
        print(
            f"{'variant':<12} {'catalog':>8} {'w':>2} {'endpoint':<8} {'req/s':>8} {'p50 ms':>7}"
            f" {'p99 ms':>7}"
            f" {'p99.9':>7} {'CPU µs':>7} {'errors':>6} {'bytes':>6} {'RSS MB':>7} {'load':>5}"
        )
    for r in results:
        print(
            f"{r.variant:<12} {r.catalog:>8,} {r.workers:>2} {r.endpoint:<8} {r.requests_per_s:>8.0f}"
            f" {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.p999_ms:>7.2f} {r.server_cpu_us:>7.0f}"
            f" {r.errors:>6}"
            f" {r.body_bytes:>6} {r.rss_after_mb:>7.0f} {r.load_average:>5.1f}",
            flush=True,
        )


# --- in-process CPU per request ------------------------------------------------------------------


@dataclass
class CpuResult:
    catalog: int
    endpoint: str
    cpu_us: float  # median over rounds of the process's CPU per request
    of_ceiling: float  # the ceiling's CPU per request over this one's: the req/s share it implies


def bench_cpu(arguments: argparse.Namespace, world: World, n_items: int) -> list[CpuResult]:
    """The app of `_serve_with_ceiling` called in-process (ASGI, no sockets, no load generator),
    `--connections` requests at once per endpoint, endpoints taking turns round after round; the
    process's CPU time per request, which other load on the machine does not inflate. An 8 MB
    write between batches leaves the caches as cold as a busy server's. Logs go to a file."""
    saved = dict(os.environ)
    os.environ.update(service_settings(world))
    log = (world.where / "in-process.log").open("w")
    try:
        app = build_app(log)
        per_request = uvloop.run(
            _cpu_rounds(app, endpoint_paths(n_items, arguments.users), arguments)
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        configure_logging("WARNING")
        log.close()
    cpu = {name: float(np.median(values)) for name, values in per_request.items()}
    results = [CpuResult(n_items, name, cpu[name], cpu["ceiling"] / cpu[name]) for name in cpu]
    for r in results:
        print(f"in-process {r.catalog:>8,} {r.endpoint:<8} {r.cpu_us:>7.0f} µs CPU/req"
              f"  {r.of_ceiling:>5.0%} of ceiling", flush=True)  # fmt: skip
    return results


async def _cpu_rounds(
    app: Any, paths: dict[str, tuple[str, int]], arguments: argparse.Namespace, warm_up: int = 3
) -> dict[str, list[float]]:
    rng = np.random.default_rng(42)
    evict = np.zeros(1 << 20)
    concurrency = arguments.connections
    per_request: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    async with app.router.lifespan_context(app):
        for round_number in range(warm_up + arguments.cpu_rounds):
            for name in ENDPOINTS:
                path, n = paths[name]
                ids = rng.integers(0, n, concurrency).tolist()
                evict += 1.0
                started = time.process_time()
                await asyncio.gather(*(_asgi_get(app, path % i) for i in ids))
                if round_number >= warm_up:
                    spent = time.process_time() - started
                    per_request[name].append(spent / concurrency * 1e6)
    return per_request


async def _asgi_get(app: Any, path: str) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"{path}: {status}")


# --- in-process top-k ----------------------------------------------------------------------------


@dataclass
class TopKResult:
    catalog: int
    index_us: float  # EmbeddingIndex.rank, seen items excluded
    naive_us: float  # LightFM.predict over all items with item features, then a full sort
    speedup: float
    same_top10: float  # share of sampled users whose top 10 agree (same weights, two paths)


def bench_topk(arguments: argparse.Namespace) -> list[TopKResult]:
    from lightfm import LightFM

    results = []
    n_users = 2_000  # users only enter as rows to pick from; 100,000 would only slow the set-up
    for n_items in arguments.sizes:
        rng = np.random.default_rng(n_items)
        products = synthetic_products(synthetic_index(n_items, 1, seed=n_items))
        # The feature layout training builds: an identity per row plus the side features the
        # pipeline derives (items: category, institution, bucketed characteristics; users:
        # demographics), each row summing to 1. LightFM.predict pays for every one of them.
        config = FeatureConfig()
        item_features = _feature_matrix(
            [item_side_features(p.category, p.institution, p, config) for p in products]
        )
        demographics = rng.integers(0, 5, (n_users, 3)).tolist()
        user_features = _feature_matrix(
            [
                [f"age_group:{a}", f"income_range:{i}", f"location:{loc}"]
                for a, i, loc in demographics
            ]
        )
        interactions = sp.coo_matrix(
            (
                np.ones(n_users, np.float32),
                (np.arange(n_users), rng.integers(0, n_items, n_users)),
            ),
            shape=(n_users, n_items),
        )
        model = LightFM(no_components=DIM, loss="warp", random_state=7)
        model.fit(interactions, user_features, item_features, epochs=1, num_threads=1)
        item_biases, item_vectors = model.get_item_representations(item_features)
        _, user_vectors = model.get_user_representations(user_features)
        item_matrix = np.column_stack([item_vectors, item_biases]).astype(np.float32)
        index = synthetic_index(
            n_items, n_users, item_matrix=item_matrix, user_vectors=user_vectors, seed=n_items
        )
        sample = rng.integers(0, n_users, arguments.topk_users).tolist()

        naive = partial(_naive_top10, model, item_features, user_features, index)
        fast = partial(_index_top10, index)
        agree = np.mean([set(naive(u).tolist()) == set(fast(u).tolist()) for u in sample[:20]])
        index_us, naive_us = _time_side_by_side(fast, naive, sample)
        result = TopKResult(n_items, index_us, naive_us, naive_us / index_us, float(agree))
        results.append(result)
        print(
            f"top-k, {n_items:>7,} items: index {index_us:8.1f} µs   naive {naive_us:9.1f} µs"
            f"   {result.speedup:6.1f}×   same top 10 for {agree:.0%} of users",
            flush=True,
        )
    return results


def _feature_matrix(side_features: list[list[str]]) -> sp.csr_matrix:
    """[identity | named side features], rows normalised to sum 1."""
    names: dict[str, int] = {}
    rows, cols = [], []
    for row, features in enumerate(side_features):
        for column in [row] + [
            len(side_features) + names.setdefault(f, len(names)) for f in features
        ]:
            rows.append(row)
            cols.append(column)
    shape = (len(side_features), len(side_features) + len(names))
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape)
    counts = np.diff(matrix.indptr).astype(np.float32)
    matrix.data /= np.repeat(counts, np.diff(matrix.indptr))
    return matrix


def _naive_top10(model, item_features, user_features, index: EmbeddingIndex, user: int):
    """What serving would do without the index: score every item through the feature matrices."""
    all_items = np.arange(index.n_items, dtype=np.int32)
    scores = model.predict(
        user, all_items, item_features=item_features, user_features=user_features, num_threads=1
    )
    scores[index.seen_rows(user)] = -np.inf
    return np.argsort(-scores)[:10]


def _index_top10(index: EmbeddingIndex, user: int) -> np.ndarray:
    return index.rank(index.user_queries([user]), 10, exclude=index.seen_rows(user)).of(0)[0]


def _time_side_by_side(fast, naive, users: list[int], rounds: int = 5) -> tuple[float, float]:
    """Median CPU µs per call of each (both single-threaded), interleaved round by round; CPU time,
    not wall time, so other processes on the shared machine do not count."""
    fast_times, naive_times = [], []
    for _ in range(rounds):
        for calls, times in ((fast, fast_times), (naive, naive_times)):
            started = time.process_time()
            for user in users:
                calls(user)
            times.append((time.process_time() - started) / len(users) * 1e6)
    return float(np.median(fast_times)), float(np.median(naive_times))


# --- memory --------------------------------------------------------------------------------------


@dataclass
class MemoryResult:
    users: int
    items: int
    dim: int
    empty_mb: float
    loaded_mb: float
    above_empty_mb: float
    arrays_mb: float  # the index's numpy arrays alone
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


def bench_memory(arguments: argparse.Namespace, workdir: Path) -> MemoryResult:
    where = workdir / "memory"
    model_dir, empty_dir, catalog = where / "models", where / "empty", where / "catalog.json"
    empty_dir.mkdir(parents=True)
    index = synthetic_index(arguments.memory_items, arguments.memory_users, seed=3)
    arrays_mb = sum(
        getattr(index, name).nbytes
        for name in ("user_vectors", "item_matrix", "seen_indptr", "seen_indices")
    ) / (1 << 20)
    activate(model_dir, save_version(model_dir, index))
    write_catalog_file(catalog, synthetic_products(index))
    del index
    store_url = f"sqlite:///{where / 'interactions.db'}"
    with served(World(where, empty_dir, catalog, store_url), 1) as (base, pid):
        fetch(base + "/health")
        empty = tree_rss_mb(pid)
    with served(World(where, model_dir, catalog, store_url), 1) as (base, pid):
        for row in range(0, arguments.memory_users, arguments.memory_users // 50):
            status, _ = fetch(f"{base}/api/v1/recommendations/products/{user_id(row)}")
            if status != 200:
                raise RuntimeError(f"user endpoint answered {status}")
        loaded = tree_rss_mb(pid)
    result = MemoryResult(
        arguments.memory_users,
        arguments.memory_items,
        DIM,
        empty,
        loaded,
        loaded - empty,
        arrays_mb,
    )
    print(
        f"memory: {result.users:,} users × {DIM} dims: {loaded:.0f} MB loaded, {empty:.0f} MB empty"
        f" → {result.above_empty_mb:.0f} MB above the empty process"
        f" (index arrays {arrays_mb:.0f} MB)",
        flush=True,
    )
    shutil.rmtree(where, ignore_errors=True)
    return result


# --- report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    variant: str
    catalog: int
    workers: int
    endpoint: str
    requests_ratio: float  # this variant's req/s over the first variant's
    p99_ratio: float


def compare_variants(http: list[LoadResult]) -> list[Comparison]:
    """Every variant but the first beside the first, endpoint by endpoint (the ceiling left out)."""
    if not http:
        return []
    first = http[0].variant
    base = {(r.catalog, r.workers, r.endpoint): r for r in http if r.variant == first}
    return [
        Comparison(
            r.variant,
            r.catalog,
            r.workers,
            r.endpoint,
            r.requests_per_s / b.requests_per_s,
            r.p99_ms / b.p99_ms,
        )
        for r in http
        if r.variant != first
        and r.endpoint != "ceiling"
        and (b := base.get((r.catalog, r.workers, r.endpoint)))
    ]


def acceptance(
    http: list[LoadResult],
    topk: list[TopKResult],
    memory: MemoryResult | None,
    min_ratio: float | None = None,
) -> list[tuple[str, str, bool]]:
    """(criterion, measured, met) for each criterion whose measurement this run has; the issue's
    targets are read on the first variant."""
    checks = []
    if min_ratio is not None:
        for c in compare_variants(http):
            checks.append((f"{c.variant} {c.catalog:,} {c.endpoint} ({c.workers} w): req/s ≥"
                           f" {min_ratio:.0%} of {http[0].variant}", f"{c.requests_ratio:.1%}",
                           c.requests_ratio >= min_ratio))  # fmt: skip
    http = [r for r in http if r.variant == http[0].variant] if http else http
    by = {(r.catalog, r.workers, r.endpoint): r for r in http}
    user, ceiling = by.get((1000, 1, "user")), by.get((1000, 1, "ceiling"))
    if user and ceiling:
        share = user.requests_per_s / ceiling.requests_per_s
        checks.append(("1,000 products, 1 worker: user req/s ≥ 70% of ceiling", f"{share:.0%}",
                       share >= 0.70))  # fmt: skip
        ratio = user.p99_ms / ceiling.p99_ms
        checks.append(("1,000 products, 1 worker: user p99 ≤ 2× ceiling p99", f"{ratio:.2f}×",
                       ratio <= 2.0))  # fmt: skip
    # The issue names no worker count for this one (it does for the 1,000-product ratio): the
    # lowest p99 over the worker counts run decides, and every count's p99 is shown, each with the
    # ceiling's own p99 from the same run beside it.
    big = sorted((r for r in http if r.catalog == 100_000 and r.endpoint == "user"),
                 key=lambda r: r.p99_ms)  # fmt: skip
    if big:
        shown = "; ".join(
            f"{r.workers} worker{'s' if r.workers > 1 else ''}: {r.p99_ms:.1f} ms"
            + (
                f" (ceiling {c.p99_ms:.1f})"
                if (c := by.get((100_000, r.workers, "ceiling")))
                else ""
            )
            for r in big
        )
        checks.append(("100,000 products: user p99 ≤ 25 ms at 32 connections", shown,
                       big[0].p99_ms <= 25.0))  # fmt: skip
    for r in topk:
        if r.catalog == 10_000:
            checks.append(("top-k ≥ 10× naive at 10,000 products", f"{r.speedup:.1f}×",
                           r.speedup >= 10))  # fmt: skip
    if memory and memory.users >= 1_000_000:
        checks.append((f"{memory.users:,} users × {memory.dim}: ≤ 400 MB above empty",
                       f"{memory.above_empty_mb:.0f} MB", memory.above_empty_mb <= 400))  # fmt: skip
    return checks


def markdown(
    http: list[LoadResult],
    cpu: list[CpuResult],
    topk: list[TopKResult],
    memory: MemoryResult | None,
    args: str,
    min_ratio: float | None = None,
) -> str:
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    lines = [f"### Run of {stamp} — {machine()}", "", f"`bench/serving.py {args}`", ""]
    if http:
        lines += [
            "| variant | catalog | workers | endpoint | req/s | % of ceiling | p50 ms | p99 ms"
            " | p99.9 ms | server CPU µs/req | errors | body B | RSS MB before → after | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        ceilings = {(r.variant, r.catalog, r.workers): r for r in http if r.endpoint == "ceiling"}
        for r in http:
            ceiling = ceilings.get((r.variant, r.catalog, r.workers))
            share = f"{r.requests_per_s / ceiling.requests_per_s:.0%}" if ceiling else ""
            lines.append(
                f"| {r.variant} | {r.catalog:,} | {r.workers} | {r.endpoint}"
                f" | {r.requests_per_s:,.0f} | {share}"
                f" | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p999_ms:.2f} | {r.server_cpu_us:.0f}"
                f" | {r.errors}"
                f" | {r.body_bytes} | {r.rss_before_mb:.0f} → {r.rss_after_mb:.0f}"
                f" | {r.load_average:.1f} |"
            )
        lines.append("")
        comparison = compare_variants(http)
        if comparison:
            first = http[0].variant
            lines += [
                f"Side by side with `{first}` (same run, rounds alternating):",
                "",
                f"| variant | catalog | workers | endpoint | req/s ÷ {first} | p99 ÷ {first} |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {c.variant} | {c.catalog:,} | {c.workers} | {c.endpoint}"
                f" | {c.requests_ratio:.3f} | {c.p99_ratio:.3f} |"
                for c in comparison
            ]
            lines.append("")
    if cpu:
        lines += [
            "In-process (the same app, no sockets), 32 requests at once, caches evicted between"
            " batches: process CPU per request, median of the rounds.",
            "",
            "| catalog | endpoint | CPU µs/req | ceiling's CPU / endpoint's |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r.catalog:,} | {r.endpoint} | {r.cpu_us:.0f} | {r.of_ceiling:.0%} |" for r in cpu
        ]
        lines.append("")
    if topk:
        lines += [
            "| catalog | index top-k CPU µs | naive CPU µs (`LightFM.predict` + sort) | speed-up"
            " | same top 10 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.catalog:,} | {r.index_us:.1f} | {r.naive_us:.1f} | {r.speedup:.1f}×"
            f" | {r.same_top10:.0%} |"
            for r in topk
        ]
        lines.append("")
    if memory:
        lines += [
            f"Memory: {memory.users:,} users × {memory.dim} dims ({memory.items:,} items): RSS"
            f" {memory.loaded_mb:.0f} MB serving vs {memory.empty_mb:.0f} MB for the same process"
            f" with no model → **{memory.above_empty_mb:.0f} MB above empty** (the index's arrays"
            f" alone: {memory.arrays_mb:.0f} MB; load avg {memory.load_average:.1f}).",
            "",
        ]
    checks = acceptance(http, topk, memory, min_ratio)
    if checks:
        lines += ["| acceptance | measured | met |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
        lines.append("")
    return "\n".join(lines)


def append_to_docs(text: str) -> None:
    """Add the run at the end of the Serving section (other benchmarks own the other sections)."""
    add_to_section(SECTION, " ".join(__doc__.split("\n\n")[0].split()), text)


def main(arguments: argparse.Namespace) -> int:
    http: list[LoadResult] = []
    cpu: list[CpuResult] = []
    topk: list[TopKResult] = []
    memory = None
    workdir = Path(tempfile.mkdtemp(prefix="finverse-serving-bench-"))
    command = arguments.command
    try:
        if command in {"all", "topk"}:
            topk = bench_topk(arguments)
        if command in {"all", "memory"}:
            memory = bench_memory(arguments, workdir)
        if command in {"all", "http", "cpu"}:
            if command != "cpu" and shutil.which("wrk") is None:
                raise SystemExit("wrk is not installed: apt-get install -y wrk")
            with variant_sources(arguments.variant) as sources:
                for n_items in arguments.sizes:
                    world = generate_world(n_items, arguments.users, workdir, arguments.feedback)
                    if command in {"all", "cpu"}:
                        cpu += bench_cpu(arguments, world, n_items)
                    if command in {"all", "http"}:
                        http += bench_http(arguments, world, n_items, not http, sources)
                    shutil.rmtree(world.where, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(http, cpu, topk, memory, " ".join(sys.argv[1:]), arguments.min_ratio)
    print("\n" + text)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "http": [asdict(r) for r in http],
                    "comparison": [asdict(c) for c in compare_variants(http)],
                    "cpu": [asdict(r) for r in cpu],
                    "topk": [asdict(r) for r in topk],
                    "memory": asdict(memory) if memory else None,
                },
                indent=2,
            )
        )
    if not arguments.no_docs:
        append_to_docs(text)
    missed = [name for name, _, ok in acceptance(http, topk, memory, arguments.min_ratio) if not ok]
    return 1 if arguments.check and missed else 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", nargs="?", default="all", choices=["all", "http", "cpu", "topk", "memory"]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per endpoint a round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each endpoint takes")
    parser.add_argument(
        "--cpu-rounds", type=int, default=200, help="in-process batches per endpoint (cpu)"
    )
    parser.add_argument("--topk-users", type=int, default=200)
    parser.add_argument("--memory-users", type=int, default=1_000_000)
    parser.add_argument("--memory-items", type=int, default=1_000)
    parser.add_argument(
        "--variant",
        type=Variant.parse,
        action="append",
        help="NAME[:tree=REF,FINVERSE_X=value,...]; repeat to serve several side by side (http)",
    )
    parser.add_argument(
        "--min-ratio", type=float, help="with variants: req/s each must keep of the first's"
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="worlds with a second model version, experiments.json and customers' feedback",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-docs", action="store_true", help="do not append to BENCHMARKS.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    arguments = parser.parse_args()
    arguments.variant = arguments.variant or [Variant("this tree")]
    if len({v.name for v in arguments.variant}) != len(arguments.variant):
        parser.error("variant names must be distinct")
    return arguments


if __name__ == "__main__":
    sys.exit(main(parse_arguments()))
