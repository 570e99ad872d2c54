"""Index declarations against `listIndexes` output as MongoDB 6/7 returns it (names, directions as
doubles when mongosh made them, partial filters): by key pattern, whatever the name."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Int64

from finverse_reco.store.mongo import EVENT_ID_UNIQUE, INTERACTIONS
from finverse_reco.store.schema import CollectionIndexes, IndexSpec, compare_indexes, key_pattern

STRING_IDS = {"event_id": {"$type": "string"}}


def index(name: str, key: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"v": 2, "key": key, "name": name, **options}


def states(existing: list[dict[str, Any]], declared: CollectionIndexes = INTERACTIONS):
    return {
        state.keys: (state.status, state.name) for _, state in compare_indexes(declared, existing)
    }


def test_the_seeds_default_names_and_mongosh_doubles_are_accepted() -> None:
    seed = [
        index("_id_", {"_id": 1}),
        index("timestamp_1", {"timestamp": 1.0}),
        index("type_1", {"type": 1.0}),
        index("data.productId_1", {"data.productId": Int64(1)}),
        index("user_id_1", {"user_id": 1.0}),
    ]
    assert states(seed) == {
        "event_id": ("missing", ""),
        "user_id, timestamp, _id": ("missing", ""),
        "session_id, timestamp, _id": ("missing", ""),
        "timestamp": ("present", "timestamp_1"),
        "type": ("present", "type_1"),
        "data.productId": ("present", "data.productId_1"),
        "user_id": ("undeclared", "user_id_1"),
    }


@pytest.mark.parametrize(
    "existing",
    [
        index("event_id_1", {"event_id": 1}, unique=True, partialFilterExpression=STRING_IDS),
        # an earlier version's index: unique over every document, so at least as strict
        index("event_id_unique", {"event_id": 1}, unique=True),
    ],
)
def test_a_unique_event_id_index_under_any_name_is_enough(existing) -> None:
    assert states([existing])["event_id"] == ("present", existing["name"])


@pytest.mark.parametrize(
    ("existing", "why"),
    [
        (index("event_id_1", {"event_id": 1}), "not unique"),
        (index("e", {"event_id": 1}, unique=True, sparse=True), "sparse"),
        (
            index("e", {"event_id": 1}, unique=True, partialFilterExpression={"type": "search"}),
            "partialFilterExpression",
        ),
        (index("e", {"event_id": 1}, unique=True, hidden=True), "hidden"),
    ],
)
def test_the_same_keys_with_options_that_do_not_do_the_job_conflict(existing, why) -> None:
    (state,) = [s for _, s in compare_indexes(INTERACTIONS, [existing]) if s.keys == "event_id"]
    assert state.status == "conflict" and why in state.detail and existing["name"] in state.detail


def test_key_order_and_direction_matter() -> None:
    existing = [
        index("a", {"timestamp": 1, "user_id": 1, "_id": 1}),
        index("b", {"session_id": 1, "timestamp": -1, "_id": -1}),
    ]
    result = states(existing)
    assert result["user_id, timestamp, _id"] == ("missing", "")
    assert result["session_id, timestamp, _id"] == ("missing", "")
    assert result["timestamp, user_id, _id"] == ("undeclared", "a")
    assert result["session_id, timestamp (-1), _id (-1)"] == ("undeclared", "b")


def test_a_partial_filter_compares_as_a_document() -> None:
    reordered = {"event_id": {"$type": "string"}}
    existing = index("x", {"event_id": 1.0}, unique=True, partialFilterExpression=reordered)
    assert EVENT_ID_UNIQUE.conflict_with(existing) is None


def test_declarations_as_data_plug_in_for_another_collection() -> None:
    audit = CollectionIndexes(
        "audit_records",
        (
            IndexSpec((("customer_id", 1), ("recorded_at", -1)), why="a customer's audit trail"),
            IndexSpec((("record_id", 1),), unique=True, why="idempotent audit writes"),
        ),
    )
    existing = [index("customer_id_1_recorded_at_-1", {"customer_id": 1, "recorded_at": -1})]
    assert states(existing, audit) == {
        "customer_id, recorded_at (-1)": ("present", "customer_id_1_recorded_at_-1"),
        "record_id": ("missing", ""),
    }
    assert [spec.options() for spec in audit.indexes] == [{}, {"unique": True}]
    (missing,) = [s for _, s in compare_indexes(audit, existing) if s.status == "missing"]
    assert missing.detail == "for idempotent audit writes"  # what --check tells the operator


def test_a_partial_filter_is_declared_only_with_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        IndexSpec((("x", 1),), why="", partial_filter={"x": {"$exists": True}})


def test_key_pattern_normalizes_numbers_only() -> None:
    assert key_pattern({"a": 1.0, "b": Int64(-1), "c": "hashed"}) == (
        ("a", 1),
        ("b", -1),
        ("c", "hashed"),
    )
