"""Publishing interaction events to RabbitMQ, each one confirmed by the broker.

A publication whose confirm is lost (the connection dropped) is sent again once the robust
connection is back: a message may then reach the queue twice, which the store's unique `event_id`
absorbs. Nothing returns before the broker has confirmed every message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from types import TracebackType

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import PublishError
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from finverse_reco.events import (
    ENRICHMENT_FIELDS,
    InteractionEvent,
    InvalidEvent,
    parse_event_bytes,
)
from finverse_reco.ingest.config import IngestConfig
from finverse_reco.ingest.topology import Topology, declare_topology, routing_key

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 30.0


class EventFileError(ValueError):
    """A JSON-lines file with invalid events; the message names the lines."""


class PublishIncomplete(RuntimeError):
    """Some messages got no positive confirm."""


def event_message(event: InteractionEvent) -> aio_pika.Message:
    return aio_pika.Message(
        event.model_dump_json(exclude_none=True, exclude=ENRICHMENT_FIELDS).encode(),
        message_id=event.event_id,
        content_type="application/json",
        type=event.type.value,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def read_events_file(path: Path) -> list[InteractionEvent]:
    """Validate every line of a JSON-lines file (blank lines skipped); all or nothing."""
    events: list[InteractionEvent] = []
    problems: list[str] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(parse_event_bytes(line.strip()))
            except InvalidEvent as exc:
                problems.append(f"line {number}: {exc.reason}")
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise EventFileError(f"{path}: {len(problems)} invalid events\n  {shown}{more}")
    return events


class InteractionPublisher:
    """Publishes to the `interaction_events` exchange with publisher confirms.

    Use as `async with InteractionPublisher(config) as publisher:`. Declares the topology on
    connecting, so events are never published into an exchange with no queues behind it.
    """

    def __init__(
        self, config: IngestConfig, *, in_flight: int = 1000, retry_for_s: float = 120.0
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be >= 1")
        self._config = config
        self._in_flight = in_flight
        self._retry_for_s = retry_for_s
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def __aenter__(self) -> InteractionPublisher:
        self._connection = await aio_pika.connect_robust(
            self._config.rabbitmq_url,
            reconnect_interval=self._config.reconnect_interval_s,
            client_properties={"connection_name": f"{self._config.connection_name}-publisher"},
        )
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            declared = await declare_topology(channel, Topology.of(self._config))
        except BaseException:
            await self._connection.close()
            raise
        self._exchange = declared.exchange
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(self, events: Iterable[InteractionEvent], *, source: str = "web") -> int:
        """Publish every event under `<type>.<source>`; return how many were confirmed."""
        published = 0
        iterator = iter(events)
        while window := list(islice(iterator, self._in_flight)):
            await self._confirmed(
                [(event_message(event), routing_key(event.type, source)) for event in window]
            )
            published += len(window)
        return published

    async def publish_body(self, body: bytes, key: str, *, message_id: str | None = None) -> None:
        """Publish raw bytes under any routing key (replaying files, testing the dead letters)."""
        message = aio_pika.Message(
            body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await self._confirmed([(message, key)])

    async def _confirmed(self, todo: Sequence[tuple[aio_pika.Message, str]]) -> None:
        exchange = self._exchange
        if exchange is None:
            raise RuntimeError("use the publisher inside `async with`")
        retrying = AsyncRetrying(
            retry=retry_if_not_exception_type(PublishError),  # unroutable: resending won't help
            wait=wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.1),
            stop=stop_after_delay(self._retry_for_s),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                outcomes = await asyncio.gather(
                    *(
                        exchange.publish(
                            message, routing_key=key, mandatory=True, timeout=PUBLISH_TIMEOUT_S
                        )
                        for message, key in todo
                    ),
                    return_exceptions=True,
                )
                failures = [
                    (pair, outcome)
                    for pair, outcome in zip(todo, outcomes, strict=True)
                    if isinstance(outcome, BaseException)
                ]
                if failures:
                    unroutable = [o for _, o in failures if isinstance(o, PublishError)]
                    if unroutable:
                        raise unroutable[0]
                    todo = [pair for pair, _ in failures]
                    log.warning(
                        "%d publications unconfirmed (%r); sending them again",
                        len(todo),
                        failures[0][1],
                    )
                    raise PublishIncomplete(f"{len(todo)} publications unconfirmed")


async def publish_events(
    config: IngestConfig, events: Iterable[InteractionEvent], *, source: str = "web"
) -> int:
    """Connect, publish every event with confirms, disconnect (`finverse-reco publish`)."""
    async with InteractionPublisher(config) as publisher:
        return await publisher.publish(events, source=source)
