"""Real-time ingestion from RabbitMQ: topology, consumer, publisher (see docs/INGESTION.md)."""

from finverse_reco.ingest.config import IngestConfig
from finverse_reco.ingest.consumer import (
    ConsumerStats,
    InteractionConsumer,
    run_consumer,
    settle_heap_for_consuming,
)
from finverse_reco.ingest.publisher import (
    EventFileError,
    InteractionPublisher,
    publish_events,
    read_events_file,
)
from finverse_reco.ingest.topology import (
    Topology,
    TopologyMismatch,
    declare_topology_at,
    queue_for,
    routing_key,
)

__all__ = [
    "ConsumerStats",
    "EventFileError",
    "IngestConfig",
    "InteractionConsumer",
    "InteractionPublisher",
    "Topology",
    "TopologyMismatch",
    "declare_topology_at",
    "publish_events",
    "queue_for",
    "read_events_file",
    "routing_key",
    "run_consumer",
    "settle_heap_for_consuming",
]
