"""Indexes declared as data, compared with what a MongoDB collection has, and the migration report.

No I/O here: `migrate.py` lists and creates. A declaration is the key pattern and the options a query
or a guarantee needs. An existing index satisfies it when its key pattern is the same (field order
and directions), whatever its name, and its options give at least what the declaration asks: a
database seeded by someone else (`timestamp_1`, `type_1`, …) or built by an earlier version of this
service is accepted as it is. Indexes nobody declared are reported and left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

KeyPattern = tuple[tuple[str, int | str], ...]
# Options that make an index unusable for a query that does not repeat them (partial, sparse,
# collation) or invisible to the planner (hidden); a declaration that does not ask for one of them
# is not satisfied by an index that has it.
NARROWING_OPTIONS = ("partialFilterExpression", "sparse", "collation", "hidden")

# missing: declared, not there yet (what `migrate --check` reports; `migrate` creates it).
IndexStatus = Literal["present", "missing", "created", "conflict", "failed", "undeclared"]
FAILING = frozenset({"missing", "conflict", "failed"})


@dataclass(frozen=True, slots=True)
class IndexSpec:
    keys: KeyPattern
    why: str
    unique: bool = False
    # Only for a unique index: the documents it covers. An existing unique index without a filter
    # covers more documents and so enforces at least as much; it is accepted.
    partial_filter: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.partial_filter is not None and not self.unique:
            raise ValueError("a partial filter is declared only on unique indexes")

    @property
    def label(self) -> str:
        return key_label(self.keys)

    def options(self) -> dict[str, Any]:
        """The createIndexes options (the name is the server's default: `field_1_other_1`)."""
        options: dict[str, Any] = {}
        if self.unique:
            options["unique"] = True
        if self.partial_filter is not None:
            options["partialFilterExpression"] = dict(self.partial_filter)
        return options

    def conflict_with(self, existing: Mapping[str, Any]) -> str | None:
        """Why an existing index on the same keys does not do this one's job, or None if it does."""
        if self.unique and not existing.get("unique"):
            return "it is not unique"
        for option in NARROWING_OPTIONS:
            value = existing.get(option)
            if not value:
                continue
            if option == "partialFilterExpression" and same_document(value, self.partial_filter):
                continue
            return f"it has {option}={value!r}"
        return None


@dataclass(frozen=True, slots=True)
class CollectionIndexes:
    collection: str
    indexes: tuple[IndexSpec, ...]


@dataclass(frozen=True, slots=True)
class IndexState:
    collection: str
    keys: str
    status: IndexStatus
    name: str = ""  # the index's name on the server, once there is one
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MigrationReport:
    where: str
    indexes: tuple[IndexState, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not any(state.status in FAILING for state in self.indexes)

    @property
    def created(self) -> tuple[IndexState, ...]:
        return tuple(state for state in self.indexes if state.status == "created")


def compare_indexes(
    declared: CollectionIndexes, existing: Iterable[Mapping[str, Any]]
) -> list[tuple[IndexSpec | None, IndexState]]:
    """Each declaration's state against `listIndexes` output (present, missing or conflict), by key
    pattern; then every other index but `_id_`, as undeclared (left alone)."""
    existing = [index for index in existing if key_pattern(index["key"]) != (("_id", 1),)]
    claimed: set[str] = set()
    states: list[tuple[IndexSpec | None, IndexState]] = []
    for spec in declared.indexes:
        same_keys = [index for index in existing if key_pattern(index["key"]) == spec.keys]
        conflicts = {index["name"]: spec.conflict_with(index) for index in same_keys}
        usable = [name for name, conflict in conflicts.items() if conflict is None]
        claimed.update(usable[:1] or conflicts)
        if usable:
            state = IndexState(declared.collection, spec.label, "present", usable[0])
        elif same_keys:
            detail = "; ".join(f"{name}: {why}" for name, why in conflicts.items())
            state = IndexState(declared.collection, spec.label, "conflict", "", detail)
        else:
            state = IndexState(declared.collection, spec.label, "missing", "", f"for {spec.why}")
        states.append((spec, state))
    for index in existing:
        if index["name"] not in claimed:
            label = key_label(key_pattern(index["key"]))
            states.append(
                (None, IndexState(declared.collection, label, "undeclared", index["name"]))
            )
    return states


def satisfied_by(spec: IndexSpec, existing: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of an existing index that does the declared one's job, if there is one."""
    for index in existing:
        if key_pattern(index["key"]) == spec.keys and spec.conflict_with(index) is None:
            return str(index["name"])
    return None


def key_pattern(keys: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> KeyPattern:
    """An index key document as ordered pairs; 1.0 (what mongosh sends) and Int64(1) read as 1."""
    pairs = keys.items() if isinstance(keys, Mapping) else keys
    normalized = []
    for name, direction in pairs:
        if isinstance(direction, int | float) and int(direction) == direction:
            direction = int(direction)
        normalized.append((str(name), direction))
    return tuple(normalized)


def key_label(keys: KeyPattern) -> str:
    return ", ".join(
        name if direction == 1 else f"{name} ({direction})" for name, direction in keys
    )


def same_document(left: Any, right: Any) -> bool:
    """Equal as documents: field order matters for keys, not for a filter's fields."""
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(same_document(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(same_document, left, right))
    return left == right
