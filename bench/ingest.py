"""Ingestion throughput: events per second from the broker into the store, side by side in one run.

Each round publishes N events (all seven types, so all four queues) once, with publisher confirms,
into an exchange that fans them out to one fresh, randomly prefixed topology per variant on the
local RabbitMQ; then each variant's consumer is started in turn, each in a fresh process of its own,
and timed until its store holds all N (or, for the ceiling, until all N are acked). Rounds rotate the
order of the variants so that load from elsewhere on the machine hits them alike; rates and ratios are
medians over the rounds, the ratios taken within each round. The consumer process's CPU time per event
is reported too: it does not depend on that load.

A fresh process per variant: in a shared one, each variant inherited the heap, the collector's state
and any process-wide setting the variants before it left behind. The batched variant's process is set
up as `finverse-reco consume`'s is (`settle_heap_for_consuming` once its consumer has started); the
ceiling and the naive consumer are not real consumer processes and run with Python's defaults.

Variants:
  ceiling          consume and ack only (multiple acks, nothing parsed or stored), on the same
                   receiving path as the real consumer: the broker's and the client's limit here
  <store> batched  the real InteractionConsumer (validate, enrich, insert_many, one multiple ack)
  <store> naive    one message at a time per queue: validate, insert it alone, ack it

Stores: SQLite (a file in a temporary directory) and MongoDB through the nx-27017 wire-protocol
stand-in (started here on a free port). The run writes --json, prints a table and appends a row to
docs/BENCHMARKS.md (skip with --no-docs). --check exits 1 if SQLite batched is below 60% of the
ceiling or below 5x SQLite naive.

    .venv/bin/python bench/ingest.py --json bench/results/ingest.json
    .venv/bin/python bench/ingest.py --events 300 --rounds 1 --no-docs --no-mongo   # smoke
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import aio_pika
import uvloop
from aiormq.abc import DeliveredMessage

from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.erasure import ErasedCustomers
from finverse_reco.events import EventType, InteractionEvent, parse_event_bytes
from finverse_reco.ingest import (
    IngestConfig,
    InteractionConsumer,
    InteractionPublisher,
    settle_heap_for_consuming,
)
from finverse_reco.ingest.admission import EventAdmission
from finverse_reco.ingest.topology import (
    CONSUMED_QUEUES,
    Topology,
    declare_topology,
    delete_topology,
)
from finverse_reco.products import Product
from finverse_reco.store import InteractionStore, open_store
from finverse_reco.store.migrate import migrate
from reporting import add_table_rows, machine  # bench/reporting.py
from stand_in import MongoStandIn  # bench/stand_in.py

SECTION = "## Ingestion (bench/ingest.py)"
TABLE_HEADER = (
    "| date | machine | events x rounds | ceiling ev/s | SQLite batched | SQLite naive | Mongo stand-in batched"
    " | Mongo stand-in naive | SQLite / ceiling | SQLite batched / naive |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class Result:
    variant: str
    round: int
    events: int
    consume_seconds: float
    cpu_seconds: float  # this process, consuming

    @property
    def events_per_second(self) -> float:
        return self.events / self.consume_seconds


def synthetic_events(count: int, run: str) -> list[InteractionEvent]:
    types = list(EventType)
    start = datetime.now(UTC) - timedelta(days=1)
    events = []
    for n in range(count):
        event_type = types[n % len(types)]
        data: dict[str, object] = {"category": "credit_card", "institution": f"bank-{n % 12}"}
        if event_type is EventType.SEARCH:
            data["query"] = "travel card no fx fee"
        elif event_type is EventType.COMPARISON:
            data["productIDs"] = [f"prod-{n % 400}", f"prod-{(n * 7) % 400}"]
        else:
            data["productId"] = f"prod-{n % 400}"
            data["viewDuration"] = float(n % 120)
        data["userDemographics"] = {"age_group": "25-34", "income_range": "50k-75k"}
        events.append(
            InteractionEvent(
                event_id=f"{run}-{n}",
                user_id=f"user-{n % 5000}",
                session_id=f"session-{n % 20000}",
                type=event_type,
                timestamp=start + timedelta(milliseconds=n),
                data=data,
            )
        )
    return events


async def drop(config: IngestConfig) -> None:
    connection = await aio_pika.connect(config.rabbitmq_url)
    async with connection:
        await delete_topology(await connection.channel(), Topology.of(config))


async def consume_batched(config: IngestConfig, store: InteractionStore, total: int) -> float:
    # The checks `finverse-reco consume` makes too: products the catalog knows, customers not
    # erased (one tombstone read per batch).
    catalog = LocalCatalog(
        [Product(f"prod-{n}", f"Product {n}", "credit_card", f"bank-{n % 12}") for n in range(400)]
    )
    admission = EventAdmission(
        products=catalog, erased=ErasedCustomers("bench-erasure-key"), tombstones=store
    )
    consumer = InteractionConsumer(config, store, admission)
    started = time.perf_counter()
    await consumer.start()
    settle_heap_for_consuming()  # as `finverse-reco consume` does (`run_consumer`)
    # Polling costs one wake-up per 5 ms; a hook in the consumer just for this would cost more.
    while consumer.stats.stored + consumer.stats.duplicates < total:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return elapsed


async def consume_naive(config: IngestConfig, store: InteractionStore, total: int) -> float:
    """One loop per queue: take a message, validate it, insert it alone, ack it, repeat."""
    topology = Topology.of(config)
    stored = 0
    finished = asyncio.Event()

    async def drain(queue: aio_pika.abc.AbstractQueue, base: str) -> None:
        nonlocal stored
        async with queue.iterator() as messages:
            async for message in messages:
                event = parse_event_bytes(message.body, fallback_event_id=message.message_id)
                await store.insert_many([event.enriched(queue_source=base)])
                await message.ack()
                stored += 1
                if stored == total:
                    finished.set()

    started = time.perf_counter()
    connection = await aio_pika.connect_robust(config.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=config.prefetch)
        declared = await declare_topology(channel, topology)
        loops = [asyncio.create_task(drain(declared.queues[b], b)) for b in CONSUMED_QUEUES]
        await finished.wait()
        elapsed = time.perf_counter() - started
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    return elapsed


async def consume_ceiling(config: IngestConfig, total: int) -> float:
    """Consume and ack only, one `multiple` ack per 100 deliveries: nothing is parsed or stored.

    Consumes on the aiormq channel under aio-pika, as InteractionConsumer does, so the ceiling is
    the same receiving path minus the work.
    """
    received = 0
    finished = asyncio.Event()

    async def on_message(message: DeliveredMessage) -> None:
        nonlocal received
        received += 1
        if received % 100 == 0 or received == total:
            await message.channel.basic_ack(message.delivery_tag, multiple=True)
        if received == total:
            finished.set()

    started = time.perf_counter()
    connection = await aio_pika.connect_robust(config.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=config.prefetch)
        declared = await declare_topology(channel, Topology.of(config))
        underlay = await channel.get_underlay_channel()
        for queue in declared.queues.values():
            await underlay.basic_consume(queue.name, on_message)
        await finished.wait()
        elapsed = time.perf_counter() - started
    return elapsed


async def prefill(base: IngestConfig, prefixes: list[str], events: list[InteractionEvent]) -> float:
    """Publish once; an exchange-to-exchange binding copies every event to each variant."""
    source = replace(base, name_prefix=f"{prefixes[0]}source.")
    connection = await aio_pika.connect(base.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        declared = await declare_topology(channel, Topology.of(source))
        for queue in declared.queues.values():
            await queue.delete(if_unused=False, if_empty=False)  # only the copies are wanted
        for prefix in prefixes:
            target = await declare_topology(channel, Topology.of(replace(base, name_prefix=prefix)))
            await target.exchange.bind(declared.exchange, routing_key="#")
    started = time.perf_counter()
    async with InteractionPublisher(source, in_flight=2000) as publisher:
        await publisher.publish(events, source="bench")
    elapsed = time.perf_counter() - started
    await drop(source)
    return elapsed


def run_variant_process(
    name: str, config: IngestConfig, total: int, store_url: str | None, naive: bool, loop: str
) -> tuple[float, float]:
    """`run_variant` in a fresh Python process: (wall seconds, CPU seconds)."""
    spec = {
        "name": name,
        "config": asdict(config),
        "total": total,
        "store_url": store_url,
        "naive": naive,
        "loop": loop,
    }
    child = subprocess.run(
        [sys.executable, __file__, "--variant-process", json.dumps(spec)],
        stdout=subprocess.PIPE,
        check=True,
    )
    result = json.loads(child.stdout.decode().splitlines()[-1])
    return result["seconds"], result["cpu"]


def variant_process(spec_json: str) -> int:
    """The child side of `run_variant_process`: one variant, its result as JSON on stdout."""
    spec = json.loads(spec_json)
    variant = run_variant(
        spec["name"],
        IngestConfig(**spec["config"]),
        spec["total"],
        spec["store_url"],
        spec["naive"],
    )
    seconds, cpu = uvloop.run(variant) if spec["loop"] == "uvloop" else asyncio.run(variant)
    print(json.dumps({"seconds": seconds, "cpu": cpu}))
    return 0


async def run_variant(
    name: str, config: IngestConfig, total: int, store_url: str | None, naive: bool
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to consume `total` pre-published events."""
    cpu = time.process_time()
    try:
        if store_url is None:
            seconds = await consume_ceiling(config, total)
        else:
            if not (await migrate(store_url)).ok:
                raise RuntimeError(f"{name}: migrate failed on {store_url}")
            store = open_store(store_url)
            await store.open()
            try:
                consume = consume_naive if naive else consume_batched
                seconds = await consume(config, store, total)
                stored = await store.count()
                if stored != total:
                    raise RuntimeError(f"{name}: {stored} events stored, expected {total}")
            finally:
                await store.close()
    finally:
        cpu = time.process_time() - cpu
        await drop(config)
    print(f"  {name:<18} {total / seconds:>10,.0f} events/s", file=sys.stderr)
    return seconds, cpu


def append_to_docs(
    rates: dict[str, float], vs_ceiling: float, vs_naive: float, total: int, rounds: int
) -> None:
    row = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {machine()} | {total:,} x {rounds}"
        f" | {rates['ceiling']:,.0f}"
        f" | {rates['sqlite batched']:,.0f} | {rates['sqlite naive']:,.0f}"
        f" | {rates.get('mongo batched', float('nan')):,.0f}"
        f" | {rates.get('mongo naive', float('nan')):,.0f}"
        f" | {vs_ceiling:.0%} | {vs_naive:.1f}x |"
    )
    add_table_rows(SECTION, __doc__.split("\n")[0], TABLE_HEADER, [row])


VARIANTS = (  # name, store, naive
    ("ceiling", None, False),
    ("sqlite batched", "sqlite", False),
    ("sqlite naive", "sqlite", True),
    ("mongo batched", "mongo", False),
    ("mongo naive", "mongo", True),
)


async def main(arguments: argparse.Namespace) -> int:
    base = IngestConfig(
        rabbitmq_url=arguments.rabbitmq_url,
        prefetch=arguments.prefetch,
        batch_size=arguments.batch_size,
        batch_timeout_ms=arguments.batch_timeout_ms,
        connection_name="finverse-bench",
    )
    total = arguments.events
    variants = [v for v in VARIANTS if not (arguments.no_mongo and v[1] == "mongo")]
    print(
        f"{total:,} events per variant, {arguments.rounds} interleaved rounds ({machine()})",
        file=sys.stderr,
    )
    results: dict[str, list[Result]] = {name: [] for name, _, _ in variants}
    publish_rates = []
    with tempfile.TemporaryDirectory(prefix="finverse-bench-") as scratch:
        folder = Path(scratch)
        with MongoStandIn(folder / "mongo", enabled=not arguments.no_mongo) as mongo:
            for round_number in range(arguments.rounds):
                run = uuid.uuid4().hex[:8]
                prefixes = {
                    name: f"bench-{run}.{name.replace(' ', '-')}." for name, _, _ in variants
                }
                published = await prefill(
                    base, list(prefixes.values()), synthetic_events(total, run)
                )
                publish_rates.append(total / published)
                print(
                    f"round {round_number + 1}: published at {total / published:,.0f}/s",
                    file=sys.stderr,
                )
                order = (
                    variants[round_number % len(variants) :]
                    + variants[: round_number % len(variants)]
                )
                for name, kind, naive in order:
                    slug = f"{name.replace(' ', '_')}_{round_number}"
                    url = {
                        None: None,
                        "sqlite": f"sqlite:///{folder}/{slug}.db",
                        "mongo": mongo.url(slug),
                    }[kind]
                    config = replace(base, name_prefix=prefixes[name])
                    seconds, cpu = await asyncio.to_thread(
                        run_variant_process, name, config, total, url, naive, arguments.loop
                    )
                    results[name].append(Result(name, round_number, total, seconds, cpu))

    rates = {name: median(r.events_per_second for r in runs) for name, runs in results.items()}
    cpu_us = {
        name: median(r.cpu_seconds / r.events * 1e6 for r in runs) for name, runs in results.items()
    }

    def within_rounds(numerator: str, denominator: str) -> float:
        pairs = zip(results[numerator], results[denominator], strict=True)
        return median(a.events_per_second / b.events_per_second for a, b in pairs)

    ceiling = rates["ceiling"]
    print(f"\n{'variant':<18}{'events/s':>12}{'of ceiling':>12}{'CPU us/event':>14}")
    for name, rate in rates.items():
        print(f"{name:<18}{rate:>12,.0f}{rate / ceiling:>12.0%}{cpu_us[name]:>14.0f}")
    print(f"publishing with confirms: {median(publish_rates):,.0f} events/s")
    batched_vs_ceiling = within_rounds("sqlite batched", "ceiling")
    batched_vs_naive = within_rounds("sqlite batched", "sqlite naive")
    print(
        f"\nSQLite batched, median of the rounds: {batched_vs_ceiling:.0%} of the ceiling"
        f" (target >= 60%), {batched_vs_naive:.1f}x naive (target >= 5x)"
    )
    report = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg()[0],
        },
        "config": {
            "events": total,
            "rounds": arguments.rounds,
            "prefetch": base.prefetch,
            "batch_size": base.batch_size,
            "batch_timeout_ms": base.batch_timeout_ms,
            "loop": arguments.loop,
        },
        "events_per_second": rates,
        "consumer_cpu_us_per_event": cpu_us,
        "publish_events_per_second": median(publish_rates),
        "ratios": {
            "sqlite_batched_vs_ceiling": batched_vs_ceiling,
            "sqlite_batched_vs_naive": batched_vs_naive,
        },
        "runs": [
            {**asdict(r), "events_per_second": r.events_per_second}
            for runs in results.values()
            for r in runs
        ],
    }
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report, indent=2))
    if not arguments.no_docs:
        append_to_docs(rates, batched_vs_ceiling, batched_vs_naive, total, arguments.rounds)
    if arguments.check and (batched_vs_ceiling < 0.6 or batched_vs_naive < 5):
        print("targets missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("FINVERSE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-timeout-ms", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument("--no-mongo", action="store_true", help="skip the MongoDB stand-in")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop for every variant (uvloop, as `finverse-reco consume` runs)",
    )
    parser.add_argument("--variant-process", help=argparse.SUPPRESS)  # see run_variant_process
    arguments = parser.parse_args()
    if arguments.variant_process:
        sys.exit(variant_process(arguments.variant_process))
    if arguments.loop == "uvloop":
        sys.exit(uvloop.run(main(arguments)))
    sys.exit(asyncio.run(main(arguments)))
