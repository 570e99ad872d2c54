"""The RabbitMQ topology: names, routing, queue arguments, and declaring it idempotently.

    producers ──► interaction_events (topic; alternate-exchange: interaction_events.unrouted)
                     product_view.#                        ──► product_views
                     search.#                              ──► searches
                     comparison.#                          ──► comparisons
                     product_click.#, favorite.#, …        ──► interactions
                     customer_profile.#                    ──► customer_profiles
                     (no binding matched)  ─► interaction_events.unrouted (fanout) ──► unrouted

    every consumed queue Q:  dead-letter exchange interaction_events.dlx, key Q ──► Q.dlq
                             retry: interaction_events.retry, key Q ──► Q.retry
                                    (TTL = retry delay, then dead-lettered back into Q)

Routing keys are `<event type>.<source>` (`product_view.web`, `favorite.ios`). `interactions` is bound
once per remaining event type rather than with `#`, so an unknown type matches nothing, goes to the
alternate exchange, and the consumer dead-letters it from `unrouted` with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType

from finverse_reco.events import EventType, InvalidEvent
from finverse_reco.ingest.config import IngestConfig

EXCHANGE = "interaction_events"
UNROUTED_QUEUE = "unrouted"
DEDICATED_QUEUES: Mapping[EventType, str] = {
    EventType.PRODUCT_VIEW: "product_views",
    EventType.SEARCH: "searches",
    EventType.COMPARISON: "comparisons",
}
SHARED_QUEUE = "interactions"
EVENT_QUEUES = ("product_views", "searches", "interactions", "comparisons")
# Customer profiles from the bank (`customers.CustomerProfile`), stored with `put_profile`.
PROFILE_ROUTING = "customer_profile"
PROFILE_QUEUE = "customer_profiles"
CONSUMED_QUEUES = (*EVENT_QUEUES, PROFILE_QUEUE, UNROUTED_QUEUE)
SOURCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def queue_for(event_type: EventType) -> str:
    return DEDICATED_QUEUES.get(event_type, SHARED_QUEUE)


def routing_key(event_type: EventType | str, source: str) -> str:
    """`<event type>.<source>`; the source is one word so the type stays the first segment."""
    if not SOURCE_RE.match(source):
        raise ValueError(f"source must match {SOURCE_RE.pattern}, got {source!r}")
    return f"{EventType(event_type).value}.{source}"


# Asked for every delivery, about a handful of (queue, routing key) pairs; a refusal is not cached.
@lru_cache(maxsize=1024)
def expected_event_type(queue: str, key: str) -> EventType:
    """The event type a message on `queue` with routing key `key` must carry, or InvalidEvent."""
    head = key.split(".", 1)[0]
    try:
        event_type = EventType(head)
    except ValueError:
        raise InvalidEvent(
            f"routing key {key!r} matches no binding: {head!r} is not a known event type"
        ) from None
    if queue_for(event_type) != queue:
        raise InvalidEvent(f"routing key {key!r} does not belong on queue {queue!r}")
    return event_type


class TopologyMismatch(RuntimeError):
    """An exchange or queue exists on the broker with other arguments than configured."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Every name and argument, derived from the config; `name_prefix` namespaces them all."""

    prefix: str
    queue_type: str
    message_ttl_ms: int
    retry_delay_ms: int

    @classmethod
    def of(cls, config: IngestConfig) -> Topology:
        return cls(
            prefix=config.name_prefix,
            queue_type=config.queue_type,
            message_ttl_ms=config.message_ttl_ms,
            retry_delay_ms=config.retry_delay_ms,
        )

    @property
    def exchange(self) -> str:
        return self.prefix + EXCHANGE

    @property
    def unrouted_exchange(self) -> str:
        return f"{self.prefix}{EXCHANGE}.unrouted"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}{EXCHANGE}.dlx"

    @property
    def retry_exchange(self) -> str:
        return f"{self.prefix}{EXCHANGE}.retry"

    def queue(self, base: str) -> str:
        return self.prefix + base

    def dead_letter_queue(self, base: str) -> str:
        return f"{self.prefix}{base}.dlq"

    def retry_queue(self, base: str) -> str:
        return f"{self.prefix}{base}.retry"

    def all_queues(self) -> list[str]:
        return [
            name
            for base in CONSUMED_QUEUES
            for name in (self.queue(base), self.retry_queue(base), self.dead_letter_queue(base))
        ]

    def all_exchanges(self) -> list[str]:
        return [
            self.exchange,
            self.unrouted_exchange,
            self.dead_letter_exchange,
            self.retry_exchange,
        ]

    def _typed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        arguments["x-queue-type"] = self.queue_type
        if self.queue_type == "quorum" and "x-dead-letter-exchange" in arguments:
            # Quorum queues dead-letter at-most-once unless told otherwise; we lose nothing.
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        return arguments

    def main_queue_arguments(self, base: str) -> dict[str, Any]:
        return self._typed(
            {
                "x-message-ttl": self.message_ttl_ms,
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": base,
            }
        )

    def retry_queue_arguments(self, base: str) -> dict[str, Any]:
        return self._typed(
            {
                "x-message-ttl": self.retry_delay_ms,
                "x-dead-letter-exchange": "",  # the default exchange: straight back to the queue
                "x-dead-letter-routing-key": self.queue(base),
            }
        )

    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        return self._typed({})  # no TTL: dead letters wait for a person


@dataclass(frozen=True, slots=True)
class DeclaredTopology:
    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    retry_exchange: AbstractExchange
    queues: Mapping[str, AbstractQueue]  # consumed queues by base name


async def declare_topology(channel: AbstractChannel, topology: Topology) -> DeclaredTopology:
    """Declare (or confirm) every exchange, queue and binding. Safe to repeat.

    Raises TopologyMismatch when something exists with other arguments: RabbitMQ never changes a
    queue's arguments in place, so the operator must delete it or configure to match.
    """
    durable = {"durable": True, "auto_delete": False}
    unrouted = await _exchange(channel, topology.unrouted_exchange, ExchangeType.FANOUT, **durable)
    exchange = await _exchange(
        channel,
        topology.exchange,
        ExchangeType.TOPIC,
        arguments={"alternate-exchange": topology.unrouted_exchange},
        **durable,
    )
    dlx = await _exchange(channel, topology.dead_letter_exchange, ExchangeType.DIRECT, **durable)
    retry = await _exchange(channel, topology.retry_exchange, ExchangeType.DIRECT, **durable)

    queues: dict[str, AbstractQueue] = {}
    for base in CONSUMED_QUEUES:
        main = await _queue(channel, topology.queue(base), topology.main_queue_arguments(base))
        dead = await _queue(
            channel, topology.dead_letter_queue(base), topology.dead_letter_queue_arguments()
        )
        again = await _queue(
            channel, topology.retry_queue(base), topology.retry_queue_arguments(base)
        )
        await dead.bind(dlx, routing_key=base)
        await again.bind(retry, routing_key=base)
        queues[base] = main

    await queues[UNROUTED_QUEUE].bind(unrouted, routing_key="")
    for event_type in EventType:
        await queues[queue_for(event_type)].bind(exchange, routing_key=f"{event_type.value}.#")
    await queues[PROFILE_QUEUE].bind(exchange, routing_key=f"{PROFILE_ROUTING}.#")
    return DeclaredTopology(exchange, dlx, retry, queues)


async def delete_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Remove every queue and exchange of `topology`, messages included (tests, benchmarks)."""
    for name in topology.all_queues():
        await channel.queue_delete(name, if_unused=False, if_empty=False)
    for name in topology.all_exchanges():
        await channel.exchange_delete(name, if_unused=False)


async def declare_topology_at(config: IngestConfig) -> Topology:
    """Connect, declare the topology, disconnect (`finverse-reco declare-topology`)."""
    topology = Topology.of(config)
    connection = await aio_pika.connect(
        config.rabbitmq_url, client_properties={"connection_name": config.connection_name}
    )
    async with connection:
        await declare_topology(await connection.channel(), topology)
    return topology


async def _exchange(
    channel: AbstractChannel, name: str, kind: ExchangeType, **options: Any
) -> AbstractExchange:
    try:
        return await channel.declare_exchange(name, kind, **options)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyMismatch(
            f"exchange {name!r} already exists with other settings ({exc}). Delete it (management"
            f" UI, or `rabbitmqadmin delete exchange name={name}`) and declare again."
        ) from None


async def _queue(channel: AbstractChannel, name: str, arguments: dict[str, Any]) -> AbstractQueue:
    try:
        return await channel.declare_queue(
            name, durable=True, auto_delete=False, arguments=arguments
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyMismatch(
            f"queue {name!r} already exists with other arguments than {arguments}"
            f" ({exc}). RabbitMQ cannot change a queue's arguments:"
            f" drain it and delete it (`rabbitmqctl delete_queue {name}`), or set"
            " FINVERSE_RABBITMQ_QUEUE_TYPE, FINVERSE_RABBITMQ_MESSAGE_TTL_MS and"
            " FINVERSE_RABBITMQ_RETRY_DELAY_MS to the values it was declared with."
        ) from None
