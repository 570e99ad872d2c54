"""Routing keys, queue choice, routing checks and queue arguments: pure functions, no broker."""

from __future__ import annotations

import pytest

from finverse_reco.events import EventType, InvalidEvent
from finverse_reco.ingest import IngestConfig, Topology, queue_for, routing_key
from finverse_reco.ingest.topology import CONSUMED_QUEUES, EVENT_QUEUES, expected_event_type

URL = "amqp://guest:guest@127.0.0.1:5672/"


def test_dedicated_types_have_their_queue_and_every_other_type_shares_interactions():
    assert queue_for(EventType.PRODUCT_VIEW) == "product_views"
    assert queue_for(EventType.SEARCH) == "searches"
    assert queue_for(EventType.COMPARISON) == "comparisons"
    shared = set(EventType) - {EventType.PRODUCT_VIEW, EventType.SEARCH, EventType.COMPARISON}
    assert {queue_for(t) for t in shared} == {"interactions"}
    assert {queue_for(t) for t in EventType} == set(EVENT_QUEUES)


def test_routing_key_is_type_then_one_word_source():
    assert routing_key(EventType.PRODUCT_VIEW, "web") == "product_view.web"
    assert routing_key("favorite", "ios-app") == "favorite.ios-app"
    with pytest.raises(ValueError, match="source"):
        routing_key(EventType.SEARCH, "web.eu")  # a dot would add a segment
    with pytest.raises(ValueError):
        routing_key("teleport", "web")


@pytest.mark.parametrize("event_type", list(EventType))
def test_a_key_routed_to_its_queue_expects_that_type(event_type):
    key = routing_key(event_type, "android")
    assert expected_event_type(queue_for(event_type), key) is event_type
    assert expected_event_type(queue_for(event_type), event_type.value) is event_type


@pytest.mark.parametrize(
    ("queue", "key", "reason"),
    [
        ("unrouted", "teleport.web", "not a known event type"),
        ("interactions", "", "not a known event type"),
        ("searches", "product_view.web", "does not belong on queue 'searches'"),
        ("unrouted", "favorite.web", "does not belong on queue 'unrouted'"),
    ],
)
def test_keys_that_match_no_binding_or_the_wrong_queue_are_invalid(queue, key, reason):
    with pytest.raises(InvalidEvent, match=reason):
        expected_event_type(queue, key)


def test_names_are_namespaced_by_the_prefix():
    topology = Topology.of(IngestConfig(URL, name_prefix="t1."))
    assert topology.exchange == "t1.interaction_events"
    assert topology.queue("searches") == "t1.searches"
    assert topology.dead_letter_queue("searches") == "t1.searches.dlq"
    assert topology.retry_queue("searches") == "t1.searches.retry"
    assert len(topology.all_queues()) == 3 * len(CONSUMED_QUEUES)
    assert all(name.startswith("t1.") for name in topology.all_queues())
    assert all(name.startswith("t1.") for name in topology.all_exchanges())
    assert Topology.of(IngestConfig(URL)).exchange == "interaction_events"


def test_queue_arguments_carry_ttl_dead_letters_retry_and_type():
    classic = Topology.of(IngestConfig(URL, message_ttl_ms=60_000, retry_delay_ms=750))
    main = classic.main_queue_arguments("searches")
    assert main == {
        "x-message-ttl": 60_000,
        "x-dead-letter-exchange": "interaction_events.dlx",
        "x-dead-letter-routing-key": "searches",
        "x-queue-type": "classic",
    }
    retry = classic.retry_queue_arguments("searches")
    assert retry["x-message-ttl"] == 750
    assert (retry["x-dead-letter-exchange"], retry["x-dead-letter-routing-key"]) == ("", "searches")
    assert classic.dead_letter_queue_arguments() == {"x-queue-type": "classic"}

    quorum = Topology.of(IngestConfig(URL, queue_type="quorum"))
    for arguments in (quorum.main_queue_arguments("x"), quorum.retry_queue_arguments("x")):
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
    assert quorum.dead_letter_queue_arguments() == {"x-queue-type": "quorum"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rabbitmq_url": "http://localhost"}, "amqp://"),
        ({"queue_type": "stream"}, "queue_type"),
        ({"prefetch": 0}, "prefetch"),
        ({"batch_size": 0}, "batch_size"),
        ({"message_ttl_ms": 0}, "message_ttl_ms"),
    ],
)
def test_a_bad_config_is_refused_naming_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        IngestConfig(**{"rabbitmq_url": URL, **changes})
