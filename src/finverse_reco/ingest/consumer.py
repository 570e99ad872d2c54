"""The RabbitMQ consumer: validate, enrich, store in batches, acknowledge only what is safe.

A delivery is acknowledged only after its event is in the store, or after a copy was published, with
a broker confirm, to a dead-letter queue (invalid, or refused by the store for good: at once, reason
in a header) or to a retry queue (the store failed on it in a way it could not classify; after
`max_attempts` it is dead-lettered too). While the store is unreachable nothing is acknowledged: the
batch in hand is retried with backoff and prefetch stops the broker from sending more. Everything unacknowledged goes back to the queue if the process dies, so delivery is
at-least-once; the store's unique `event_id` makes storage effectively-once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import aio_pika
from aio_pika.abc import AbstractChannel as RobustChannel
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aiormq.abc import AbstractChannel, DeliveredMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from finverse_reco import telemetry
from finverse_reco.customers import parse_profile_bytes
from finverse_reco.events import InteractionEvent, InvalidEvent, parse_event_bytes
from finverse_reco.ingest.config import IngestConfig
from finverse_reco.ingest.topology import (
    CONSUMED_QUEUES,
    PROFILE_QUEUE,
    PROFILE_ROUTING,
    DeclaredTopology,
    Topology,
    declare_topology,
    expected_event_type,
)
from finverse_reco.store.base import (
    EventsRefused,
    InsertResult,
    InteractionStore,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

REASON_HEADER = "x-finverse-reason"
ATTEMPTS_HEADER = "x-finverse-attempts"
ROUTING_KEY_HEADER = "x-finverse-routing-key"
QUEUE_HEADER = "x-finverse-queue"
FAILED_AT_HEADER = "x-finverse-failed-at"
PUBLISH_TIMEOUT_S = 30.0
STORE_BACKOFF_MAX_S = 2.0
# Allocations between two collections of the youngest generation (CPython's default is 700): a
# batch of 500 events allocates some 15 container objects each, which live until it is stored.
GC_YOUNG_THRESHOLD = 10_000
RECENT_DEAD_LETTERS_KEPT = 20


class StoreRejected(Exception):
    """The store answers but failed on these events without saying why (not `EventsRefused`, not
    `StoreUnavailable`): retrying at once is useless, a later attempt might succeed."""


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    refused: int = 0  # refused by the store for good (dead-lettered, part of `dead_lettered`)
    retried: int = 0
    batches: int = 0
    store_failures: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message this consumer sent to a dead-letter queue, and why."""

    at: datetime
    queue: str  # base name of the queue it came from
    reason: str


@dataclass(slots=True)
class _Delivery:
    message: DeliveredMessage  # its delivery tag means something only on `message.channel`
    queue: str  # base name, without the prefix


class InteractionConsumer:
    """Consumes the four event queues (and `unrouted`) into an InteractionStore.

    `start()` connects (aio-pika `connect_robust`), declares the topology and starts consuming;
    `stop()` stops deliveries, stores and acknowledges the batch in flight, then disconnects.
    The store is opened and closed by the caller.
    """

    def __init__(self, config: IngestConfig, store: InteractionStore) -> None:
        self._config = config
        self._store = store
        self._topology = Topology.of(config)
        self._connection: AbstractRobustConnection | None = None
        self._channel: RobustChannel | None = None
        self._declared: DeclaredTopology | None = None
        self._consumer_tags: list[str] = []
        self._pending: list[_Delivery] = []
        self._first_pending_at = 0.0
        self._wakeup = asyncio.Event()
        self._filled = asyncio.Event()
        self._draining = False
        self._drain_started_at = 0.0
        self._batches: asyncio.Task[None] | None = None
        self.stats = ConsumerStats()
        # The reasons are in each dead letter's header; these are the last ones this process sent,
        # for the console (reading them back from the queue would redeliver the messages).
        self.recent_dead_letters: deque[DeadLetter] = deque(maxlen=RECENT_DEAD_LETTERS_KEPT)

    @property
    def connected(self) -> bool:
        """Connected to the broker and consuming (for readiness checks)."""
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and self._batches is not None
            and not self._batches.done()
        )

    async def start(self) -> None:
        if self._connection is not None:
            raise RuntimeError("the consumer was already started")
        self._connection = await aio_pika.connect_robust(
            self._config.rabbitmq_url,
            reconnect_interval=self._config.reconnect_interval_s,
            client_properties={"connection_name": self._config.connection_name},
        )
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=self._config.prefetch)
            self._declared = await declare_topology(channel, self._topology)
            self._channel = channel
            # Batching starts before the first subscription: on a backlog, the first queues'
            # deliveries flood in while the later subscriptions wait for their replies (measured:
            # a third of a second), and would otherwise wait as well.
            self._batches = asyncio.create_task(self._run(), name="ingest-batches")
            await self._consume(channel)
            # aio-pika re-declares the topology on a reconnect; the consumers are ours to restore.
            channel.reopen_callbacks.add(self._consume)
        except BaseException:
            batches, self._batches = self._batches, None
            if batches is not None:
                batches.cancel()
                with suppress(asyncio.CancelledError):
                    await batches
            await self._connection.close()
            raise
        log.info(
            "consuming %s (prefetch %d, batches of %d or %d ms)",
            ", ".join(self._topology.queue(base) for base in self._declared.queues),
            self._config.prefetch,
            self._config.batch_size,
            self._config.batch_timeout_ms,
        )

    async def dead_letter_depths(self) -> dict[str, int]:
        """Messages waiting in each dead-letter queue, by the base name of the queue they left.

        Passive declarations on a channel of their own: a missing queue closes only that channel."""
        if self._connection is None or not self.connected:
            raise ConnectionError("not connected to the broker")
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            depths = {}
            for base in CONSUMED_QUEUES:
                queue = await channel.declare_queue(
                    self._topology.dead_letter_queue(base), passive=True, robust=False
                )
                depths[base] = queue.declaration_result.message_count
            return depths
        finally:
            with suppress(Exception):
                await channel.close()

    async def wait(self) -> None:
        """Return when the consumer has stopped; raise what stopped it, if it failed."""
        if self._batches is None:
            raise RuntimeError("the consumer was not started")
        await asyncio.shield(self._batches)

    async def stop(self) -> None:
        """Stop deliveries, finish the batch in flight (store, ack), disconnect."""
        if self._batches is None or self._connection is None or self._channel is None:
            return
        if not self._draining:
            self._draining = True
            self._drain_started_at = asyncio.get_running_loop().time()
            with suppress(Exception):
                underlay = await asyncio.wait_for(self._channel.get_underlay_channel(), timeout=5)
                for tag in self._consumer_tags:
                    await asyncio.wait_for(underlay.basic_cancel(tag), timeout=5)
            self._wakeup.set()
            self._filled.set()
        try:
            await asyncio.shield(self._batches)
        except StoreUnavailable as exc:
            log.warning(
                "stopped with the batch in flight unacknowledged, the store being down (%s):"
                " the broker will deliver it again",
                exc,
            )
        except Exception:
            log.exception("the batch loop had failed")
        finally:
            await self._connection.close()

    # --- receiving ------------------------------------------------------------------------------

    async def _consume(self, channel: RobustChannel) -> None:
        """Start a consumer per queue on the channel's current AMQP channel.

        Straight on aiormq, under aio-pika: aio-pika's `Queue.consume` wraps every delivery in an
        IncomingMessage and a second task, which halves the deliveries per second here.
        """
        if self._draining or self._declared is None:
            return
        underlay = await channel.get_underlay_channel()
        self._consumer_tags = []
        for base, queue in self._declared.queues.items():
            ok = await underlay.basic_consume(queue.name, partial(self._on_message, base))
            self._consumer_tags.append(ok.consumer_tag)

    async def _on_message(self, queue: str, message: DeliveredMessage) -> None:
        # Only buffers: aiormq runs one such task per delivery, in delivery order (FIFO), which
        # keeps delivery tags ascending in the buffer; batching happens in `_run`.
        pending = self._pending
        pending.append(_Delivery(message, queue))
        if len(pending) == 1:
            self._first_pending_at = asyncio.get_running_loop().time()
            self._wakeup.set()
        if len(pending) >= self._config.batch_size:
            self._filled.set()

    async def _run(self) -> None:
        while self._pending or not self._draining:
            if not self._pending:
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            await self._wait_for_batch()
            await self._handle(self._take_batch())

    async def _wait_for_batch(self) -> None:
        if self._draining or len(self._pending) >= self._config.batch_size:
            return
        loop = asyncio.get_running_loop()
        remaining = self._first_pending_at + self._config.batch_timeout_ms / 1000 - loop.time()
        if remaining > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._filled.wait(), timeout=remaining)

    def _take_batch(self) -> list[_Delivery]:
        size = self._config.batch_size
        batch = self._pending[:size]
        del self._pending[:size]
        self._filled.clear()
        if self._pending:
            self._first_pending_at = asyncio.get_running_loop().time()
            if len(self._pending) >= size:
                self._filled.set()
        return batch

    # --- one batch ------------------------------------------------------------------------------

    async def _handle(self, batch: list[_Delivery]) -> None:
        self.stats.batches += 1
        self.stats.received += len(batch)
        received_at = datetime.now(UTC)
        accepted: list[tuple[_Delivery, InteractionEvent]] = []
        invalid: list[tuple[_Delivery, str]] = []
        profiles: list[_Delivery] = []
        for delivery in batch:
            if delivery.queue == PROFILE_QUEUE:
                profiles.append(delivery)
                continue
            try:
                accepted.append((delivery, self._validate(delivery, received_at)))
            except InvalidEvent as exc:
                invalid.append((delivery, exc.reason))
        refused, failed = await self._store_events(accepted)
        if profiles:
            bad_profiles, unstored_profiles = await self._store_profiles(profiles)
            invalid += bad_profiles
            failed += unstored_profiles
        undiverted = await self._divert(invalid, refused, failed)
        await self._settle(batch, undiverted)

    def _validate(self, delivery: _Delivery, received_at: datetime) -> InteractionEvent:
        message = delivery.message
        key = _routing_key(message)
        expected = expected_event_type(delivery.queue, key)
        event = parse_event_bytes(
            message.body,
            fallback_event_id=message.header.properties.message_id,
            queue_source=delivery.queue,
            received_at=received_at,
        )
        if event.type is not expected:
            raise InvalidEvent(
                f"event type {event.type.value!r} does not match routing key {key!r}"
            )
        return event

    async def _store_events(
        self, accepted: list[tuple[_Delivery, InteractionEvent]]
    ) -> tuple[list[tuple[_Delivery, str]], list[tuple[_Delivery, str]]]:
        """Store the batch. Returns the deliveries the store refused for good (to dead-letter now)
        and those it failed on without saying why (to retry later), each with the reason."""
        if not accepted:
            return [], []
        try:
            outcome = await self._insert([event for _, event in accepted])
        except StoreRejected as exc:
            log.warning("the store failed on a batch (%s); storing its events one by one", exc)
        else:
            return self._refused_deliveries(accepted, outcome), []
        refused, failed = [], []
        for delivery, event in accepted:
            try:
                outcome = await self._insert([event])
            except StoreRejected as exc:
                failed.append((delivery, f"the store failed on the event: {exc}"))
            else:
                refused += self._refused_deliveries([(delivery, event)], outcome)
        return refused, failed

    async def _store_profiles(
        self, deliveries: list[_Delivery]
    ) -> tuple[list[tuple[_Delivery, str]], list[tuple[_Delivery, str]]]:
        """Store customer profiles one by one (they are rare, and each replaces a whole profile).
        Returns the invalid ones (to dead-letter now) and those the store failed on (to retry)."""
        invalid, failed = [], []
        for delivery in deliveries:
            key = _routing_key(delivery.message)
            try:
                if key.split(".", 1)[0] != PROFILE_ROUTING:
                    raise InvalidEvent(f"routing key {key!r} does not belong on {PROFILE_QUEUE!r}")
                profile = parse_profile_bytes(delivery.message.body)
            except InvalidEvent as exc:
                invalid.append((delivery, exc.reason))
                continue
            try:
                stored = await self._store.put_profile(profile)
            except StoreUnavailable as exc:
                failed.append((delivery, f"the store failed on the profile: {exc}"))
                continue
            # An older copy than the stored profile is not an error: it is simply superseded.
            self.stats.stored += stored
            self.stats.duplicates += not stored
        return invalid, failed

    def _refused_deliveries(
        self,
        stored: list[tuple[_Delivery, InteractionEvent]],
        outcome: InsertResult | EventsRefused,
    ) -> list[tuple[_Delivery, str]]:
        """Count what the store kept; the deliveries of the events it refused, with the reason."""
        if isinstance(outcome, InsertResult):
            self._count(outcome)
            return []
        self._count(outcome.stored)
        return [
            (stored[refusal.index][0], f"the store refused the event: {refusal.reason}")
            for refusal in outcome.refused
        ]

    def _count(self, result: InsertResult) -> None:
        # The store counts an event id repeated within a batch as a duplicate, too.
        self.stats.stored += result.inserted
        self.stats.duplicates += result.duplicates
        telemetry.INGESTED_EVENTS.labels("rabbitmq", "stored").inc(result.inserted)
        telemetry.INGESTED_EVENTS.labels("rabbitmq", "duplicate").inc(result.duplicates)

    async def _insert(self, events: Sequence[InteractionEvent]) -> InsertResult | EventsRefused:
        """Insert; while the store is unreachable, wait with backoff (nothing is acked meanwhile).

        A refusal comes back as a value: retrying would store nothing more."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential(multiplier=0.05, max=STORE_BACKOFF_MAX_S) + wait_random(0, 0.05),
            stop=self._give_up_on_store,
            before_sleep=self._log_store_outage,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await self._store.insert_many(events)
                except EventsRefused as refused:
                    return refused
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    # Not every driver error says whether the store is down: ask it.
                    await self._store.ping()
                    raise StoreRejected(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _give_up_on_store(self, state: RetryCallState) -> bool:
        if not self._draining:
            return False
        elapsed = asyncio.get_running_loop().time() - self._drain_started_at
        return elapsed >= self._config.drain_timeout_s

    def _log_store_outage(self, state: RetryCallState) -> None:
        self.stats.store_failures += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "store unavailable (%s); holding the batch unacknowledged, retry %d in %.2f s",
            error,
            state.attempt_number,
            state.upcoming_sleep,
        )

    async def _divert(
        self,
        invalid: list[tuple[_Delivery, str]],
        refused: list[tuple[_Delivery, str]],
        failed: list[tuple[_Delivery, str]],
    ) -> set[int]:
        """Publish deliveries, with confirms, to the dead-letter queues (invalid, or refused by the
        store: at once) or the retry queues (failed: dead-lettered after `max_attempts`).

        Returns the ids of deliveries that could not be published (they must not be acked).
        """
        if not (invalid or refused or failed):
            return set()
        declared = self._declared
        assert declared is not None
        # (delivery, exchange, reason, attempts, metric label: None for a retry)
        jobs: list[tuple[_Delivery, AbstractExchange, str, int, str | None]] = []
        for label, dead in (("invalid", invalid), ("refused", refused)):
            for delivery, reason in dead:
                attempts = _attempts(delivery)
                jobs.append((delivery, declared.dead_letter_exchange, reason, attempts, label))
        for delivery, reason in failed:
            attempts = _attempts(delivery) + 1
            if attempts >= self._config.max_attempts:
                reason = f"{reason} (gave up after {attempts} attempts)"
                exchange, label = declared.dead_letter_exchange, "max_attempts"
            else:
                exchange, label = declared.retry_exchange, None
            jobs.append((delivery, exchange, reason, attempts, label))
        outcomes = await asyncio.gather(
            *(self._republish(*job[:4]) for job in jobs), return_exceptions=True
        )
        undiverted = set()
        for (delivery, exchange, reason, _, label), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("could not divert a message to %s: %r", exchange.name, outcome)
                undiverted.add(id(delivery))
            elif label is None:
                self.stats.retried += 1
            else:
                self.stats.dead_lettered += 1
                self.stats.refused += label == "refused"
                # Dead-lettered for good: the event will not be stored.
                telemetry.INGESTED_EVENTS.labels("rabbitmq", "rejected").inc()
                telemetry.DEAD_LETTERED.labels(delivery.queue, label).inc()
                self.recent_dead_letters.append(
                    DeadLetter(datetime.now(UTC), delivery.queue, reason[:1000])
                )
                log.debug("dead-lettered a message from %s: %s", delivery.queue, reason)
        return undiverted

    async def _republish(
        self, delivery: _Delivery, exchange: AbstractExchange, reason: str, attempts: int
    ) -> None:
        original = delivery.message
        properties = original.header.properties
        headers = dict(properties.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:1000],
                QUEUE_HEADER: delivery.queue,
                ROUTING_KEY_HEADER: _routing_key(original),
                ATTEMPTS_HEADER: attempts,
                FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
            }
        )
        copy = aio_pika.Message(
            original.body,
            headers=headers,
            content_type=properties.content_type,
            content_encoding=properties.content_encoding,
            message_id=properties.message_id,
            timestamp=properties.timestamp,
            type=properties.message_type,
            app_id=properties.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(
            copy, routing_key=delivery.queue, mandatory=True, timeout=PUBLISH_TIMEOUT_S
        )

    async def _settle(self, batch: list[_Delivery], undiverted: set[int]) -> None:
        """Ack the batch: one `multiple` ack per channel, or one by one if some must be requeued.

        A delivery whose channel has closed since (a reconnect) cannot be acked: the broker has
        already put it back, and its second delivery will be stored as a duplicate.
        """
        try:
            if not undiverted:
                last_tags: dict[int, tuple[AbstractChannel, int]] = {}
                for delivery in batch:
                    tag = delivery.message.delivery_tag
                    last = last_tags.get(id(delivery.message.channel))
                    if last is None or tag > last[1]:
                        last_tags[id(delivery.message.channel)] = (delivery.message.channel, tag)
                for channel, tag in last_tags.values():
                    if not channel.is_closed:
                        await channel.basic_ack(tag, multiple=True)
                return
            for delivery in batch:
                if delivery.message.channel.is_closed:
                    continue
                if id(delivery) in undiverted:
                    await delivery.message.channel.basic_nack(
                        delivery.message.delivery_tag, requeue=True
                    )
                else:
                    await delivery.message.channel.basic_ack(delivery.message.delivery_tag)
        except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            log.warning("could not acknowledge a batch (%r); the broker will redeliver it", exc)


def _routing_key(message: DeliveredMessage) -> str:
    """The producer's routing key, also for a message that came back from a retry queue."""
    original = (message.header.properties.headers or {}).get(ROUTING_KEY_HEADER)
    if isinstance(original, bytes):
        original = original.decode("utf-8", "replace")
    return str(original or message.routing_key or "")


def _attempts(delivery: _Delivery) -> int:
    value = (delivery.message.header.properties.headers or {}).get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) else 0


def settle_heap_for_consuming() -> None:
    """Tune the collector for a process that, once started, mostly consumes (`finverse-reco consume`).

    Collects once, then freezes what start-up allocated (modules, models, the connection), so that
    later full collections no longer walk it, and collects the youngest generation less often. The
    collector was 6-8% of the consumer's time. Call it once, after the consumer has started.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


async def run_consumer(
    config: IngestConfig,
    store: InteractionStore,
    *,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> ConsumerStats:
    """`finverse-reco consume`: consume until a stop signal, then drain the batch in flight."""
    consumer = InteractionConsumer(config, store)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        await consumer.start()
        settle_heap_for_consuming()
        stopping = asyncio.create_task(stop_requested.wait())
        failing = asyncio.create_task(consumer.wait())
        await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        await consumer.stop()
        if not stopping.done():
            stopping.cancel()
            await failing  # the batch loop died by itself: re-raise why
        failing.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await failing  # already reported by stop()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
    log.info("stopped: %s", consumer.stats)
    return consumer.stats
