"""What the ingestion processes need to know, as plain values (the CLI maps Settings onto it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Broker address, topology options and batching.

    `name_prefix` namespaces every exchange and queue (tests and benchmarks use a random one so they
    never touch the production topology on a shared broker); production leaves it empty.
    """

    rabbitmq_url: str
    prefetch: int = 1000
    message_ttl_ms: int = 7 * 24 * 3600 * 1000
    queue_type: QueueType = "classic"
    max_attempts: int = 5
    retry_delay_ms: int = 5000
    batch_size: int = 500
    batch_timeout_ms: int = 200
    name_prefix: str = ""
    # How long SIGTERM waits for the batch in flight when the store is down before giving up on it
    # (its messages are then left unacknowledged and the broker hands them to another consumer).
    drain_timeout_s: float = 10.0
    reconnect_interval_s: float = 1.0
    connection_name: str = "finverse-reco"

    def __post_init__(self) -> None:
        if not self.rabbitmq_url.startswith(("amqp://", "amqps://")):
            raise ValueError("rabbitmq_url must start with amqp:// or amqps://")
        if self.queue_type not in ("classic", "quorum"):
            raise ValueError(f"queue_type must be 'classic' or 'quorum', not {self.queue_type!r}")
        for name in (
            "prefetch",
            "max_attempts",
            "batch_size",
            "batch_timeout_ms",
            "retry_delay_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.message_ttl_ms < 1:
            raise ValueError("message_ttl_ms must be >= 1")
