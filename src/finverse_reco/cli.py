"""`finverse-reco`: the service's processes. Their parts are built by `compose.py`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from finverse_reco import compose
from finverse_reco.observability import configure_logging
from finverse_reco.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from finverse_reco.store.coordination import Coordination

console = Console(stderr=True)
log = logging.getLogger("finverse_reco")


# --- shared plumbing --------------------------------------------------------------------------------


@contextmanager
def progress_bar(description: str):
    """A rich progress bar; yields `advance(done, total)`."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


# --- commands ---------------------------------------------------------------------------------------


async def seed_demo(settings: Settings, seed: int, users: int, products: int, events: int) -> int:
    from finverse_reco.demo import generate_world, write_world
    from finverse_reco.events import parse_event

    started = time.perf_counter()
    try:
        world = generate_world(seed, n_users=users, n_products=products, n_events=events)
    except ValueError as exc:  # arguments the world cannot be built from (too few products, …)
        print(
            f"finverse-reco seed-demo: {exc} (see finverse-reco seed-demo --help)", file=sys.stderr
        )
        return 2
    write_world(world, settings.catalog_path)
    store = compose.store(settings, "worker")
    await store.open()
    inserted = duplicates = 0
    try:
        with progress_bar("storing demo interactions") as advance:
            batch_size = 5000
            for start in range(0, len(world.events), batch_size):
                batch = [parse_event(e) for e in world.events[start : start + batch_size]]
                result = await store.insert_many(batch)
                inserted += result.inserted
                duplicates += result.duplicates
                advance(start + len(batch), len(world.events))
        profiles = sum([await store.put_profile(profile) for profile in world.profiles])
    finally:
        await store.close()
    console.print(
        f"demo world (seed {seed}): {len(world.products)} products -> {settings.catalog_path}, "
        f"{len(world.users)} users, {inserted} interactions stored ({duplicates} already there), "
        f"{profiles} customer profiles "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return 0


async def train_once(
    settings: Settings, result_file: Path | None = None, job_id: str | None = None
) -> int:
    """One training run; its exit code says the outcome, and `result_file` (for `RefreshJobs`)
    gets the same outcome as a typed result; `job_id`'s record gets the fit's progress."""
    from finverse_reco.service.training import NoTrainingData, TrainingBusy, run_training
    from finverse_reco.service.training_result import TrainingOutcome, TrainingResult

    def report(result: TrainingResult) -> int:
        print(f"{result.outcome}: {result.reason}", file=sys.stderr)
        if result_file is not None:
            result.write(result_file)
        return result.exit_code

    store = compose.store(settings, "trainer")
    catalog = compose.catalog(settings)
    artifacts = compose.artifact_store(settings)
    coordination = compose.coordination(settings, "trainer")
    try:
        for part in (store, artifacts, coordination):
            await part.open()
        with progress_bar("training (epochs)") as advance:
            reporter = JobProgress(coordination, job_id, advance)
            reporter.start()
            try:
                outcome = await run_training(
                    store,
                    catalog,
                    compose.training_config(settings),
                    artifacts=artifacts,
                    coordination=coordination,
                    progress=reporter.advance,
                )
            finally:
                await reporter.stop()
    except TrainingBusy as exc:
        return report(TrainingResult(outcome=TrainingOutcome.BUSY, reason=str(exc)))
    except NoTrainingData as exc:
        return report(TrainingResult(outcome=TrainingOutcome.FAILED, reason=str(exc)))
    except Exception as exc:
        report(
            TrainingResult(outcome=TrainingOutcome.FAILED, reason=f"{type(exc).__name__}: {exc}")
        )
        raise
    finally:
        await catalog.close()
        for part in (coordination, artifacts, store):
            await part.close()
    metrics = {k: float(v) for k, v in outcome.metrics.items() if isinstance(v, int | float)}
    summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    return report(
        TrainingResult(
            outcome=TrainingOutcome.ACTIVATED
            if outcome.activated
            else TrainingOutcome.NOT_ACTIVATED,
            reason=f"model {outcome.version}: {outcome.reason}; {summary}",
            version=outcome.version,
            metrics=metrics,
        )
    )


class JobProgress:
    """The fit's epochs to the progress bar at once and, when training for a refresh job, to the
    job's record about once a second (the fit calls `advance` from its thread)."""

    def __init__(
        self, coordination: Coordination, job_id: str | None, bar: Callable[[int, int], None]
    ) -> None:
        self._coordination, self._job_id, self._bar = coordination, job_id, bar
        self._latest: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def advance(self, done: int, total: int) -> None:
        self._bar(done, total)
        self._latest = (done, total)

    def start(self) -> None:
        if self._job_id is not None:
            self._task = asyncio.create_task(self._report_until_stopped())

    async def _report_until_stopped(self) -> None:
        reported = None
        try:
            while True:
                await asyncio.sleep(1.0)
                reported = await self._report(reported)
        finally:
            await self._report(reported)  # the last epochs, before the result

    async def _report(self, reported: tuple[int, int] | None) -> tuple[int, int] | None:
        from finverse_reco.store import StoreUnavailable

        latest = self._latest
        if latest is None or latest == reported:
            return reported
        try:
            await self._coordination.update_job_progress(self._job_id, *latest)
        except StoreUnavailable as exc:  # progress is a courtesy; the training goes on
            log.warning("could not record the job's progress: %s", exc)
            return reported
        return latest

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def train_on_schedule(settings: Settings) -> int:
    from finverse_reco import telemetry
    from finverse_reco.schedule import seconds_until_next
    from finverse_reco.service.training_result import EXIT_BUSY, EXIT_NOT_ACTIVATED

    if settings.metrics_port:
        telemetry.serve_metrics(settings.metrics_port, settings.host)
    outcomes = {0: "succeeded", EXIT_NOT_ACTIVATED: "not_activated", EXIT_BUSY: "skipped"}
    while (delay := seconds_until_next(settings.refresh_schedule)) is not None:
        log.info("next training in %.0fs (%s)", delay, settings.refresh_schedule)
        await asyncio.sleep(delay)
        started = time.perf_counter()
        try:
            code = await train_once(settings)
        except Exception:  # the scheduled trainer lives on; the next run may succeed
            log.exception("scheduled training failed")
            code = 1
        telemetry.record_training(outcomes.get(code, "failed"), time.perf_counter() - started)
    print("FINVERSE_REFRESH_SCHEDULE is off: nothing to schedule", file=sys.stderr)
    return 2


async def bootstrap(settings: Settings) -> None:
    """`make run`: migrate, seed the demo world into an empty store, train if no model exists."""
    if await migrate_store(settings, check_only=False) != 0:
        raise SystemExit("migrate failed: see the table above")
    store = compose.store(settings, "worker")
    await store.open()
    try:
        empty = await store.count() == 0
    finally:
        await store.close()
    if empty and settings.seed_demo_on_empty:
        console.print("[bold]empty store:[/] seeding the demo world (first run only)")
        await seed_demo(settings, seed=42, users=2000, products=240, events=100_000)
    artifacts = compose.artifact_store(settings)
    await artifacts.open()
    try:
        active = await artifacts.current()
    finally:
        await artifacts.close()
    if active is None:
        console.print("[bold]no model yet:[/] training one (first run only)")
        code = await train_once(settings)
        if code not in (0,):
            raise SystemExit(f"training failed with exit code {code}")


def run_with_uvloop(coroutine) -> int:
    import uvloop

    return uvloop.run(coroutine)


def serve(settings: Settings, do_bootstrap: bool, workers: int) -> int:
    """Bind the port first: a taken port is one error line, before any bootstrap or banner. With
    several workers, each is a process running the app from the environment's settings, all
    accepting on the one socket; their metrics are summed through PROMETHEUS_MULTIPROC_DIR."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from finverse_reco.api.http_limits import bounded_http_protocol

    try:
        listener = listening_socket(settings.host, settings.port)
    except OSError as exc:
        print(
            f"failed: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    if do_bootstrap:
        asyncio.run(bootstrap(settings))
    options = {
        "log_level": settings.log_level.lower(),
        "loop": "uvloop",
        "http": bounded_http_protocol(settings.max_header_bytes, settings.max_headers),
        "access_log": False,
        "log_config": None,  # keep the JSON logging configured in main()
    }
    if workers > 1:
        _metrics_dir_for_workers()
        config = uvicorn.Config(
            "finverse_reco.api.app:create_app_from_environment",
            factory=True,
            workers=workers,
            **options,
        )
    else:
        from finverse_reco.api.app import create_app

        config = uvicorn.Config(create_app(settings), **options)
    url = f"http://{settings.host}:{settings.port}"
    console.print(
        f"\n[bold green]FinVerse Recommendation Service[/] on {url}"
        f" ({workers} worker{'s' if workers > 1 else ''}; API docs: {url}/docs)\n"
        f"  try: curl {url}/api/v1/recommendations/products/user_00001\n"
    )
    if do_bootstrap and settings.writer_api_keys:
        # The demo's writer key, so a newcomer can post events; a deployment's keys stay unprinted.
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        event = (
            f'{{"user_id": "user_00001", "type": "product_view", "timestamp": "{now}", '
            '"data": {"productId": "prod_0001"}}'
        )
        console.print(
            f"  writer key: {settings.writer_api_keys[0]}\n"
            f"  post an event: curl -X POST {url}/api/v1/interactions"
            f" -H 'X-API-Key: {settings.writer_api_keys[0]}'"
            f" -H 'Content-Type: application/json' -d '{event}'\n",
            markup=False,
            soft_wrap=True,  # one line, so that the command can be copied
        )
    if workers > 1:
        Multiprocess(config, sockets=[listener]).run()
    else:
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def listening_socket(host: str, port: int):
    """A bound socket for uvicorn (it listens once the app has started)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def _metrics_dir_for_workers() -> None:
    """An empty directory for prometheus_client's multiprocess mode, inherited by the workers:
    PROMETHEUS_MULTIPROC_DIR if set (emptied: files of a previous run's workers would be summed
    in), else a new temporary one."""
    import os
    import tempfile

    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not chosen:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="finverse-metrics-")
        return
    directory = Path(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


async def migrate_store(settings: Settings, check_only: bool) -> int:
    from finverse_reco.store import StoreUnavailable
    from finverse_reco.store.migrate import migrate

    try:
        report = await migrate(
            settings.store_url, check_only=check_only, **compose.store_options(settings, "worker")
        )
    except StoreUnavailable as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    # One plain line per index: it goes to logs (compose's migrate job) as often as to a terminal.
    print(report.where, file=sys.stderr)
    for state in report.indexes:
        name = f" [{state.name}]" if state.name else ""
        detail = f": {state.detail}" if state.detail else ""
        print(
            f"  {state.status:<10} {state.collection} ({state.keys}){name}{detail}", file=sys.stderr
        )
    if not report.ok:
        print("not migrated: see the states above (docs/STORES.md)", file=sys.stderr)
        return 1
    done = "checked: nothing missing" if check_only else f"migrated: {len(report.created)} created"
    print(done, file=sys.stderr)
    return 0


async def declare_topology(settings: Settings) -> int:
    from finverse_reco.ingest import TopologyMismatch, declare_topology_at

    try:
        topology = await declare_topology_at(compose.ingest_config(settings))
    except TopologyMismatch as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"exchanges: {', '.join(topology.all_exchanges())}")
    print(f"queues: {', '.join(topology.all_queues())}")
    return 0


async def consume(settings: Settings) -> int:
    from finverse_reco import telemetry
    from finverse_reco.ingest import run_consumer

    if settings.metrics_port:
        telemetry.serve_metrics(settings.metrics_port, settings.host)
    store = compose.store(settings, "worker")
    catalog = compose.catalog(settings)
    await store.open()
    try:
        stats = await run_consumer(
            compose.ingest_config(settings),
            store,
            compose.event_admission(settings, catalog, store),
        )
    finally:
        await catalog.close()
        await store.close()
    log.info("consumer stopped: %s", stats)
    return 0


async def publish(settings: Settings, path: Path | None, demo_seed: int | None, source: str) -> int:
    from finverse_reco.events import parse_event
    from finverse_reco.ingest import EventFileError, InteractionPublisher, read_events_file

    if path is not None:
        try:
            events = read_events_file(path)
        except EventFileError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    else:
        from finverse_reco.demo import generate_world

        events = [parse_event(e) for e in generate_world(demo_seed or 42).events]
    published = 0
    batch_size = 1000
    async with InteractionPublisher(compose.ingest_config(settings)) as publisher:
        with progress_bar("publishing (confirmed)") as advance:
            for start in range(0, len(events), batch_size):
                published += await publisher.publish(
                    events[start : start + batch_size], source=source
                )
                advance(published, len(events))
    print(f"{published} events published and confirmed by the broker", file=sys.stderr)
    return 0


async def models_list(settings: Settings) -> int:
    from finverse_reco.model.artifacts import ArtifactError

    artifacts = compose.artifact_store(settings)
    await artifacts.open()
    try:
        active = await artifacts.current()
        versions = (await artifacts.list_versions())[::-1]  # newest first
        # The name is what `models activate` takes: never cut it short, even in an 80-column pipe.
        name = Column("version", no_wrap=True, min_width=max(map(len, versions), default=7))
        table = Table(name, "active", "created", "precision@10 (val)", "note")
        for version in versions:
            try:
                manifest = await artifacts.manifest(version)
            except ArtifactError as exc:  # a broken version is listed as broken, not hidden
                table.add_row(version, "", "", "", f"unreadable: {exc}")
                continue
            precision = manifest.get("metrics", {}).get("validation_precision@10")
            table.add_row(
                version,
                "*" if version == active else "",
                str(manifest.get("created_at", "")),
                f"{precision:.4f}" if precision is not None else "",
                str(manifest.get("activation_reason", "")),
            )
    finally:
        await artifacts.close()
    Console().print(table)
    return 0


async def models_activate(settings: Settings, version: str) -> int:
    """Verify the version (downloaded into the model directory first with FINVERSE_ARTIFACTS=store),
    then make it active; an operator's rollback is not fenced by the training lease."""
    from finverse_reco.model.artifacts import ArtifactError, load_version
    from finverse_reco.service.models import ModelHolder

    artifacts = compose.artifact_store(settings)
    await artifacts.open()
    try:
        if version not in await artifacts.list_versions():
            print(f"refused: no model version {version}", file=sys.stderr)
            return 1
        watcher = compose.model_watcher(settings, ModelHolder(), artifacts)
        await watcher.ensure_local(version)
        await asyncio.to_thread(load_version, settings.model_dir, version)
        await artifacts.activate(version)
    except ArtifactError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await artifacts.close()
    print(f"{version} is now active; serving processes pick it up within their poll interval")
    return 0


# --- argument parsing -------------------------------------------------------------------------------

EXAMPLES = {
    "serve": "finverse-reco serve --bootstrap        # what `make run` does",
    "train": "finverse-reco train                    # one run; exit 0 activated, 3 kept inactive, "
    "75 busy\n  finverse-reco train --schedule         # production trainer, FINVERSE_REFRESH_SCHEDULE",
    "seed-demo": "finverse-reco seed-demo --seed 42 --events 100000",
    "migrate": "FINVERSE_STORE_URL=mongodb://127.0.0.1:27017/finverse_interactions "
    "finverse-reco migrate\n  finverse-reco migrate --check   # report only; exit 1 if anything is missing",
    "declare-topology": "FINVERSE_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ "
    "finverse-reco declare-topology",
    "consume": "FINVERSE_STORE_URL=mongodb://127.0.0.1:27017/finverse_interactions "
    "FINVERSE_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ finverse-reco consume",
    "publish": "finverse-reco publish --file events.jsonl --source web\n"
    "  finverse-reco publish --demo 42",
    "banking-stub": "finverse-reco banking-stub --port 8100 --failure-rate 0.3 "
    "--latency-spike-ms 300 --spike-rate 0.1",
    "models": "finverse-reco models list\n  finverse-reco models activate 20261127T101500Z-abc123",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad arguments: one line naming the command and the argument, exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


Number = TypeVar("Number", int, float)


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; the message says which range."""
    return _bounded(int, "an integer", low, high)


def bounded_float(low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a number in [low, high] (NaN is outside every range)."""
    return _bounded(float, "a number", low, high)


def _bounded(
    convert: Callable[[str], Number], noun: str, low: Number, high: Number | None
) -> Callable[[str], Number]:
    wanted = f"{noun} from {low} to {high}" if high is not None else f"{noun} >= {low}"

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not low <= value <= (high if high is not None else math.inf):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {shown}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="finverse-reco",
        description="FinVerse Recommendation Service. Settings come from FINVERSE_* variables and .env.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        example = EXAMPLES.get(name)
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}" if example else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    serve_p = command("serve", "Serve the HTTP API (embedded mode: also retrains on schedule).")
    serve_p.add_argument(
        "--bootstrap",
        action="store_true",
        help="seed demo data if the store is empty, train if no model",
    )
    serve_p.add_argument(
        "--workers",
        type=bounded_int(1, 64),
        help="worker processes on the one port (default FINVERSE_WORKERS, 1)",
    )

    train_p = command("train", "Train a model from the store and publish a new version.")
    train_p.add_argument("--schedule", action="store_true", help="keep running, on the schedule")
    train_p.add_argument(
        "--result-file",
        type=Path,
        help="also write the outcome there as JSON (how a refresh job learns it)",
    )
    train_p.add_argument(
        "--job-id",
        type=str,
        help="the refresh job whose record gets the fit's progress (set by a refresh job)",
    )

    seed_p = command(
        "seed-demo", "Generate the synthetic demo world into the catalog file and store."
    )
    seed_p.add_argument("--seed", type=bounded_int(0), default=42)
    seed_p.add_argument("--users", type=bounded_int(1), default=2000)
    seed_p.add_argument("--products", type=bounded_int(1), default=240)
    seed_p.add_argument("--events", type=bounded_int(1), default=100_000)

    models_p = command("models", "List model versions or activate one (rollback).")
    models_sub = models_p.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="versions, newest first")
    activate_p = models_sub.add_parser("activate", help="point CURRENT at a verified version")
    activate_p.add_argument("version")

    stub_p = command("banking-stub", "Serve the catalog file as a Banking Service stand-in.")
    stub_p.add_argument("--port", type=bounded_int(1, 65535), default=8100)
    stub_p.add_argument("--catalog", type=Path, help="catalog file (default FINVERSE_CATALOG_PATH)")
    stub_p.add_argument(
        "--latency-ms", type=bounded_float(0), default=0, help="added to every call"
    )
    stub_p.add_argument(
        "--latency-spike-ms", type=bounded_float(0), default=0, help="extra on a spike"
    )
    stub_p.add_argument(
        "--spike-rate", type=bounded_float(0, 1), default=0, help="share of calls that spike"
    )
    stub_p.add_argument(
        "--failure-rate", type=bounded_float(0, 1), default=0, help="share of calls that fail 503"
    )
    stub_p.add_argument("--seed", type=int, default=None)

    migrate_p = command(
        "migrate",
        "Create the store's indexes (MongoDB) or schema (SQLite) if missing (idempotent).",
    )
    migrate_p.add_argument(
        "--check", action="store_true", help="only report; exit 1 if anything is missing"
    )

    command("declare-topology", "Declare the RabbitMQ exchanges and queues (idempotent).")
    command("consume", "Consume interaction events from RabbitMQ into the store (SIGTERM drains).")
    publish_p = command("publish", "Publish events to RabbitMQ with publisher confirms.")
    source = publish_p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a JSON-lines file of events")
    source.add_argument("--demo", type=int, metavar="SEED", help="the demo world's events")
    publish_p.add_argument("--source", default="web", help="routing key suffix (default web)")

    from finverse_reco.evaluation import command as evaluate_command

    evaluate_p = command(
        "evaluate", "Compare models on a dataset and protocol: table, JSON, chart."
    )
    evaluate_p.epilog = f"example:\n  {evaluate_command.EXAMPLE}"
    evaluate_command.add_arguments(evaluate_p)
    tune_p = command("tune", "Choose what `train` fits on a validation split; write a params file.")
    tune_p.epilog = f"example:\n  {evaluate_command.TUNE_EXAMPLE}"
    evaluate_command.add_tune_arguments(tune_p)
    return parser


def offline(settings: Settings, args: argparse.Namespace) -> int:
    """`evaluate` and `tune`, on one LightFM thread and one BLAS thread, so that a run gives the
    same numbers bit for bit however many cores the machine has and however busy they are."""
    from threadpoolctl import threadpool_limits

    from finverse_reco.evaluation import command
    from finverse_reco.model import ParamsFileError

    try:
        params, tuned_on = compose.training_params(settings, getattr(args, "params_file", None))
    except ParamsFileError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    params = params.with_threads(1)
    with threadpool_limits(limits=1):
        if args.command == "tune":
            return command.run_tune(args, params, compose.weighting(settings))
        # The rules serving applies (FINVERSE_POLICY_FILE): quality is reported with them on and off.
        policy = None if args.no_policy else compose.policy(settings)
        return command.run(args, params, tuned_on, compose.weighting(settings), policy)


def _check_params_file(settings: Settings) -> None:
    """A bad FINVERSE_MODEL_PARAMS_FILE stops start-up, as a bad setting does (every training
    run reads it again, so a file replaced by a newer `tune` is picked up without a restart)."""
    from finverse_reco.model import ParamsFileError

    try:
        compose.training_params(settings)
    except ParamsFileError as exc:
        print(f"invalid configuration:\n  FINVERSE_MODEL_PARAMS_FILE: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    if args.command in ("serve", "train"):
        _check_params_file(settings)
    if args.command == "serve":
        code = serve(settings, args.bootstrap, args.workers or settings.workers)
    elif args.command == "train":
        code = asyncio.run(
            train_on_schedule(settings)
            if args.schedule
            else train_once(settings, args.result_file, args.job_id)
        )
    elif args.command == "seed-demo":
        code = asyncio.run(seed_demo(settings, args.seed, args.users, args.products, args.events))
    elif args.command == "models":
        if args.models_command == "list":
            code = asyncio.run(models_list(settings))
        else:
            code = asyncio.run(models_activate(settings, args.version))
    elif args.command == "migrate":
        code = asyncio.run(migrate_store(settings, args.check))
    elif args.command == "declare-topology":
        code = asyncio.run(declare_topology(settings))
    elif args.command == "consume":
        code = run_with_uvloop(consume(settings))
    elif args.command == "publish":
        code = asyncio.run(publish(settings, args.file, args.demo, args.source))
    elif args.command in ("evaluate", "tune"):
        code = offline(settings, args)
    elif args.command == "banking-stub":
        from finverse_reco.demo.banking_stub import run_banking_stub

        run_banking_stub(
            args.catalog or settings.catalog_path,
            args.port,
            host=settings.host,
            latency_ms=args.latency_ms,
            latency_spike_ms=args.latency_spike_ms,
            spike_rate=args.spike_rate,
            failure_rate=args.failure_rate,
            seed=args.seed,
        )
        code = 0
    raise SystemExit(code)
