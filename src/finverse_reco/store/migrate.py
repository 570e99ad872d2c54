"""`finverse-reco migrate`: give a database the indexes (MongoDB) or schema (SQLite) the stores need.

An explicit, idempotent step, run by operators (and compose's `migrate` service) and by
`serve --bootstrap`; never on the request path, and no store builds an index by itself. On MongoDB it
compares each collection's `listIndexes` with the declarations by key pattern (store/schema.py):
what is there under any name is kept, what is missing is created with one `createIndexes` per
collection, without an operation timeout (a build over a large collection takes minutes), and an
index on the same keys with options that do not do the job is reported as a conflict, never dropped.
A collection added later plugs in by adding its `CollectionIndexes` to `MONGO_COLLECTIONS`, and
its SQLite table by adding its schema script (`CREATE … IF NOT EXISTS`) to `SQLITE_SCHEMAS`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from finverse_reco.store.base import StoreUnavailable
from finverse_reco.store.mongo import (
    CUSTOMER_PROFILES,
    DEFAULT_DATABASE,
    DUPLICATE_KEY,
    INTERACTIONS,
)
from finverse_reco.store.mongo_options import MongoOptions, new_client, redact
from finverse_reco.store.schema import (
    CollectionIndexes,
    IndexState,
    MigrationReport,
    compare_indexes,
    satisfied_by,
)
from finverse_reco.store.sqlite import PROFILES_SCHEMA, SQLiteInteractionStore
from finverse_reco.store.sqlite import SCHEMA as INTERACTIONS_SCHEMA

MONGO_COLLECTIONS: tuple[CollectionIndexes, ...] = (INTERACTIONS, CUSTOMER_PROFILES)
SQLITE_SCHEMAS: tuple[str, ...] = (INTERACTIONS_SCHEMA, PROFILES_SCHEMA)


async def migrate(url: str, *, check_only: bool = False, **options: Any) -> MigrationReport:
    """Create what is missing (or, `check_only`, only report it). `options` are `MongoOptions`
    fields; the operation timeout is off unless the URL sets `timeoutMS`."""
    if url.startswith("sqlite://"):
        return await migrate_sqlite(url, check_only=check_only)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        mongo_options = MongoOptions(**{**options, "timeout_ms": None})
        return await migrate_mongo(url, mongo_options, check_only=check_only)
    raise ValueError(f"unsupported store URL scheme in {url!r}: use sqlite:/// or mongodb://")


async def migrate_mongo(
    url: str,
    options: MongoOptions,
    *,
    check_only: bool = False,
    collections: tuple[CollectionIndexes, ...] = MONGO_COLLECTIONS,
) -> MigrationReport:
    client = new_client(url, options)
    states: list[IndexState] = []
    try:
        database = client.get_default_database(default=DEFAULT_DATABASE)
        for declared in collections:
            collection = database[declared.collection]
            states += await ensure_indexes(collection, declared, check_only=check_only)
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB at {redact(url)}: {type(exc).__name__}: {exc}") from exc
    finally:
        await client.close()
    return MigrationReport(redact(url), tuple(states))


async def ensure_indexes(
    collection: AsyncCollection[dict[str, Any]],
    declared: CollectionIndexes,
    *,
    check_only: bool = False,
) -> list[IndexState]:
    """The collection's index states after creating the missing declared ones."""
    compared = compare_indexes(declared, await list_indexes(collection))
    missing = [spec for spec, state in compared if spec is not None and state.status == "missing"]
    if check_only or not missing:
        return [state for _, state in compared]
    failure = ""
    try:
        await collection.create_indexes(
            [IndexModel(list(spec.keys), **spec.options()) for spec in missing]
        )
    except OperationFailure as exc:
        failure = build_failure(exc)
    existing = await list_indexes(collection)  # the truth, whatever createIndexes answered
    states = []
    for spec, state in compared:
        if spec is None or state.status != "missing":
            states.append(state)
        elif (name := satisfied_by(spec, existing)) is not None:
            states.append(IndexState(state.collection, state.keys, "created", name))
        else:
            detail = failure or "not there after createIndexes"
            states.append(IndexState(state.collection, state.keys, "failed", "", detail))
    return states


async def list_indexes(collection: AsyncCollection[dict[str, Any]]) -> list[dict[str, Any]]:
    """`listIndexes`; a collection that does not exist yet has none (PyMongo answers empty)."""
    return await (await collection.list_indexes()).to_list()


def build_failure(exc: OperationFailure) -> str:
    reason = f"{exc.code} {(exc.details or {}).get('codeName', '')}: {exc}".strip()
    if exc.code == DUPLICATE_KEY:
        return (
            f"{reason} — stored documents share a value the unique index needs to be unique;"
            " remove the copies, then run migrate again (docs/STORES.md)"
        )
    return reason


async def migrate_sqlite(url: str, *, check_only: bool = False) -> MigrationReport:
    """SQLite: the schema scripts (CREATE … IF NOT EXISTS), reported table by table and index by
    index. The interaction store's open() sets the file up (WAL) and runs its own script."""
    store = SQLiteInteractionStore.from_url(url)
    before = await asyncio.to_thread(sqlite_schema, store.path)
    if not check_only:
        await store.open()
        await store.close()
        await asyncio.to_thread(run_scripts, store.path)
    after = await asyncio.to_thread(sqlite_schema, store.path)
    states = []
    for (table, name), holds in (await asyncio.to_thread(declared_sqlite_schema)).items():
        if (table, name) in before:
            state = IndexState(table, holds, "present", name)
        elif (table, name) in after:
            state = IndexState(table, holds, "created", name)
        else:
            state = IndexState(table, holds, "missing" if check_only else "failed", name)
        states.append(state)
    return MigrationReport(str(store.path), tuple(states))


def sqlite_schema(path: Path) -> dict[tuple[str, str], str]:
    """(table, name) → what it holds, for every table and index of the file (none if no file)."""
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return schema_of(db)
    finally:
        db.close()


def run_scripts(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        for script in SQLITE_SCHEMAS:
            db.executescript(script)
    finally:
        db.close()


def declared_sqlite_schema() -> dict[tuple[str, str], str]:
    """What the schema scripts create, read from a scratch in-memory database."""
    db = sqlite3.connect(":memory:")
    try:
        for script in SQLITE_SCHEMAS:
            db.executescript(script)
        return schema_of(db)
    finally:
        db.close()


def schema_of(db: sqlite3.Connection) -> dict[tuple[str, str], str]:
    objects = {}
    rows = db.execute(
        "SELECT type, tbl_name, name FROM sqlite_master WHERE type IN ('table', 'index')"
        " AND name NOT LIKE 'sqlite_%' ORDER BY tbl_name, type DESC, name"
    ).fetchall()
    for kind, table, name in rows:
        if kind == "table":
            objects[(table, name)] = "table"
        else:
            columns = db.execute("SELECT name FROM pragma_index_info(?)", (name,)).fetchall()
            objects[(table, name)] = ", ".join(str(column) for (column,) in columns)
    return objects
