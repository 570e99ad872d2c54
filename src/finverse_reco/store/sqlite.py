"""The embedded interaction store: one SQLite file in WAL mode, driven from worker threads.

Layout, chosen for the training scan: each row keeps the indexed fields as columns and the rest of the
document as one orjson text, so reading a million rows costs one C-level `orjson.loads` per row instead
of assembling dicts field by field in Python (measured: about twice as fast). The timestamp is an
integer of microseconds since the epoch: exact, compact and compared as a number. A side table lists
every product an event touches (`productId` and each of `productIDs`), so popularity counts comparisons.

Threads: one writer thread owns the only write connection (SQLite has one writer anyway), a small pool
of reader threads each keeps its own connection, and every scan opens a connection of its own whose read
transaction gives it a stable snapshot. The event loop only awaits futures.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from finverse_reco.audit import AuditRecord
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import FeedbackEvent, InteractionColumns, InteractionEvent
from finverse_reco.store.base import (
    EventsRefused,
    InsertResult,
    RefusedEvent,
    StoreUnavailable,
)

URL_PREFIX = "sqlite:///"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
READER_THREADS = 2
WRITER_CACHE_KIB = 64 * 1024
# Stored as integer columns, not in `body`. A set: pydantic-core filters a frozenset more slowly.
DATETIME_COLUMNS = {"timestamp", "received_at"}
EVENT_SERIALIZER = InteractionEvent.__pydantic_serializer__

SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    session_id TEXT,
    type TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    received_us INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user_ts ON interactions (user_id, ts_us);
CREATE INDEX IF NOT EXISTS interactions_session_ts ON interactions (session_id, ts_us);
CREATE INDEX IF NOT EXISTS interactions_ts ON interactions (ts_us);
CREATE INDEX IF NOT EXISTS interactions_type ON interactions (type);
-- Left by earlier versions for a popularity query nothing calls any more.
DROP TRIGGER IF EXISTS interactions_products;
DROP TABLE IF EXISTS interaction_products;
"""
# Append-only: one row per served list, the record as JSON beside the columns its reads filter on.
# A rowid table: a record (~1 KB) is too big for a WITHOUT ROWID table's B-tree, where inserts cost
# 2.5x the CPU (35 vs 13 us a row, measured); a table created WITHOUT ROWID by an earlier version
# keeps working as it is.
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    recommendation_id TEXT PRIMARY KEY,
    user_id TEXT,
    served_us INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_user_time ON audit_records (user_id, served_us);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (served_us);
"""
# Erased customers, by keyed hash of their id (finverse_reco.erasure).
ERASURE_SCHEMA = """
CREATE TABLE IF NOT EXISTS erasure_tombstones (
    tombstone TEXT PRIMARY KEY,
    erased_us INTEGER NOT NULL
) WITHOUT ROWID;
"""
# What erasure deletes: kind (in the receipt) → table with a user_id column.
CUSTOMER_TABLES = {
    "interactions": "interactions",
    "audit_records": "audit_records",
    "profiles": "customer_profiles",
}
# One row per customer: the profile as JSON beside its `updated_at` (an integer, for the
# newest-wins comparison of `put_profile`).
PROFILES_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_profiles (
    user_id TEXT PRIMARY KEY,
    updated_us INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
"""
# A profile that does not state consent keeps the stored one (`->` yields JSON, so json_set
# keeps a stored false a JSON false).
PUT_PROFILE = (
    "INSERT INTO customer_profiles (user_id, updated_us, body) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET updated_us = excluded.updated_us,"
    " body = CASE WHEN excluded.body ->> '$.personalisation_consent' IS NULL"
    " THEN json_set(excluded.body, '$.personalisation_consent',"
    " customer_profiles.body -> '$.personalisation_consent')"
    " ELSE excluded.body END"
    " WHERE excluded.updated_us >= customer_profiles.updated_us"
)
# The consent alone into the stored profile; the inserted body is used only when there is none.
PUT_CONSENT = (
    "INSERT INTO customer_profiles (user_id, updated_us, body) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET updated_us = excluded.updated_us,"
    " body = json_set(customer_profiles.body, '$.personalisation_consent',"
    " excluded.body -> '$.personalisation_consent')"
    " WHERE excluded.updated_us >= customer_profiles.updated_us"
)
# SQLite's default limit on a statement's parameters is 32,766 (999 before 3.32): stay under both.
MAX_IN_PARAMETERS = 900

# A batch goes in as one multi-row INSERT (of at most STATEMENT_ROWS rows), so that the writer
# thread releases and takes back the GIL a few times for the whole batch:
# `executemany` takes it back after every row, and each statement more costs another round, each time
# waiting for the busy event loop (measured: inserts took several times their CPU time).
STATEMENT_ROWS = 1000  # 7 parameters a row, far below SQLite's limit of 32,766 a statement
SELECT_DOCUMENT = "SELECT ts_us, received_us, body FROM interactions"

T = TypeVar("T")


class SQLiteInteractionStore:
    """`InteractionStore` on a local SQLite file (`sqlite:///relative/path` or `sqlite:////abs`)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_connection: sqlite3.Connection | None = None
        self._reader_local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_connections_lock = threading.Lock()
        self._open_requested = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, busy_timeout_ms: int = 5000) -> SQLiteInteractionStore:
        if not url.startswith(URL_PREFIX):
            raise ValueError(
                f"a SQLite store URL looks like sqlite:///path/to/file.db, not {url!r}"
            )
        path = url.removeprefix(URL_PREFIX)
        if not path or path == ":memory:" or "?" in path:
            raise ValueError(
                f"{url!r}: the SQLite store needs a file path (sqlite:///data/interactions.db "
                "relative, sqlite:////abs/path.db absolute); in-memory databases are not supported"
            )
        return cls(path, busy_timeout_ms=busy_timeout_ms)

    def __repr__(self) -> str:
        return f"SQLiteInteractionStore({str(self.path)!r})"

    # --- lifecycle

    async def open(self) -> None:
        """Create the file, schema and indexes (idempotent).

        A failure raises StoreUnavailable; every later call tries again, so a store whose disk
        comes back recovers without a restart.
        """
        self._open_requested = True
        async with self._open_lock:
            if self._writer is not None:
                return
            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
            try:
                self._write_connection = await self._run(writer, self._create_schema)
            except BaseException:
                writer.shutdown(wait=False)
                raise
            self._writer = writer
            self._readers = ThreadPoolExecutor(
                max_workers=READER_THREADS, thread_name_prefix="sqlite-reader"
            )

    async def close(self) -> None:
        self._open_requested = False
        writer, readers = self._writer, self._readers
        if writer is None or readers is None:
            return
        self._writer = self._readers = None

        def shut_down() -> None:
            writer.shutdown(wait=True)
            readers.shutdown(wait=True)
            # Connections are opened with check_same_thread=False, so closing them here is safe
            # once the threads that used them are gone.
            if self._write_connection is not None:
                self._write_connection.close()
                self._write_connection = None
            with self._reader_connections_lock:
                for connection in self._reader_connections:
                    connection.close()
                self._reader_connections.clear()

        await asyncio.to_thread(shut_down)

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT 1 FROM interactions LIMIT 1").fetchall())

    # --- writes

    async def insert_many(self, events: Sequence[InteractionEvent]) -> InsertResult:
        if not events:
            return InsertResult(inserted=0, duplicates=0)
        # The first copy of an event id in a batch wins, exactly as if the copies came one by one.
        unique = list({event.event_id: event for event in reversed(events)}.values())[::-1]
        rows = [event_row(event) for event in unique]

        def insert(db: sqlite3.Connection) -> tuple[int, int, list[RefusedEvent]]:
            try:
                inserted = insert_rows(db, rows)
            except sqlite3.IntegrityError:
                # A constraint beyond event_id's refused some row (a CHECK, a trigger's RAISE,
                # another UNIQUE index): the batch was rolled back; find which, one at a time.
                return insert_one_by_one(db, events)
            return inserted, len(events) - inserted, []

        inserted, duplicates, refused = await self._write(insert)
        result = InsertResult(inserted=inserted, duplicates=duplicates)
        if refused:
            raise EventsRefused(result, refused)
        return result

    # --- reads

    async def user_interactions(self, user_id: str, limit: int = 200) -> list[InteractionEvent]:
        require_positive_limit(limit)
        rows = await self._read(
            lambda db: db.execute(
                f"{SELECT_DOCUMENT} WHERE user_id = ? ORDER BY ts_us DESC, id DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
        )
        return [InteractionEvent.model_validate(row_document(row)) for row in rows]

    async def session_interactions(
        self, session_id: str, limit: int = 200
    ) -> list[InteractionEvent]:
        require_positive_limit(limit)
        rows = await self._read(
            lambda db: db.execute(
                f"{SELECT_DOCUMENT} WHERE session_id = ? ORDER BY ts_us DESC, id DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        )
        return [InteractionEvent.model_validate(row_document(row)) for row in reversed(rows)]

    async def events_of_types(
        self, types: Collection[str], since: datetime, until: datetime | None = None
    ) -> list[FeedbackEvent]:
        kinds = sorted(set(types))
        if not kinds:
            return []
        conditions = [f"type IN ({', '.join('?' * len(kinds))})", "ts_us >= ?"]
        parameters: list[Any] = [*kinds, to_microseconds(since)]
        if until is not None:
            conditions.append("ts_us < ?")
            parameters.append(to_microseconds(until))
        where = " AND ".join(conditions)
        query = f"SELECT ts_us, body FROM interactions WHERE {where} ORDER BY ts_us DESC, id DESC"
        rows = await self._read(lambda db: db.execute(query, parameters).fetchall())
        return feedback_events(rows)

    async def customers_events_of_types(
        self,
        user_ids: Collection[str],
        since: Mapping[str, datetime],
        limit: int,
    ) -> dict[str, list[FeedbackEvent]]:
        require_positive_limit(limit)
        kinds = sorted(since)
        customers = sorted(set(user_ids))
        if not kinds or not customers:
            return {}
        # One statement per customer, all in one trip to a reader thread: a branch per type walks
        # the (user_id, ts_us) index over that type's own window for its newest `limit`, so
        # impressions never crowd out an application. `+type` keeps the planner off the type
        # index (without ANALYZE it picked it once and scanned every impression); one statement
        # with `user_id IN` for the batch saved little.
        branch = (
            "SELECT * FROM (SELECT ts_us, id, body FROM interactions"
            " WHERE user_id = ? AND +type = ? AND ts_us >= ? ORDER BY ts_us DESC, id DESC LIMIT ?)"
        )
        query = " UNION ALL ".join([branch] * len(kinds)) + " ORDER BY 1 DESC, 2 DESC"
        windows = [(kind, to_microseconds(since[kind])) for kind in kinds]

        def read(db: sqlite3.Connection) -> dict[str, list[tuple[int, str]]]:
            found = {}
            for user_id in customers:
                parameters = [p for kind, start in windows for p in (user_id, kind, start, limit)]
                rows = db.execute(query, parameters).fetchall()
                if rows:
                    found[user_id] = [(ts_us, body) for ts_us, _, body in rows]
            return found

        return {user: feedback_events(rows) for user, rows in (await self._read(read)).items()}

    async def count(self, since: datetime | None = None) -> int:
        if since is None:
            query, parameters = "SELECT count(*) FROM interactions", ()
        else:
            query = "SELECT count(*) FROM interactions WHERE ts_us >= ?"
            parameters = (to_microseconds(since),)
        (total,) = await self._read(lambda db: db.execute(query, parameters).fetchone())
        return int(total)

    async def scan(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> AsyncIterator[InteractionColumns]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        await self._ensure_open()
        conditions, parameters = [], []
        if since is not None:
            conditions.append("ts_us >= ?")
            parameters.append(to_microseconds(since))
        if until is not None:
            conditions.append("ts_us < ?")
            parameters.append(to_microseconds(until))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"SELECT ts_us, body FROM interactions{where} ORDER BY id"

        # One connection per scan: its read transaction is a snapshot, so rows written while the
        # scan runs are neither skipped nor seen twice.
        def start() -> tuple[sqlite3.Connection, sqlite3.Cursor]:
            db = self._connect()
            return db, db.execute(query, parameters)

        def next_batch(cursor: sqlite3.Cursor) -> InteractionColumns | None:
            rows = cursor.fetchmany(batch_size)
            if not rows:
                return None
            # The body holds every field but the timestamps, which stay integers here.
            times = np.array([row[0] for row in rows], dtype=np.float64) / 1e6
            return InteractionColumns.from_documents([orjson.loads(row[1]) for row in rows], times)

        db, cursor = await self._in_thread(start)
        try:
            while (batch := await self._in_thread(next_batch, cursor)) is not None:
                yield batch
        finally:
            await asyncio.to_thread(db.close)

    # --- the audit trail

    async def append_audit(self, records: Sequence[AuditRecord]) -> int:
        if not records:
            return 0
        rows = [audit_row(record) for record in records]

        def insert(db: sqlite3.Connection) -> int:
            # Many rows a statement, as for events: `executemany` steps once a row, and each step
            # lets the serving thread take the GIL, which the writer then waits to get back.
            with write_transaction(db):
                before = db.total_changes
                for count, values in statement_chunks(rows):
                    db.execute(
                        insert_new_sql("audit_records", AUDIT_COLUMNS, "recommendation_id", count),
                        values,
                    )
                return db.total_changes - before

        return await self._write(insert)

    async def audit_record(self, recommendation_id: str) -> AuditRecord | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT served_us, body FROM audit_records WHERE recommendation_id = ?",
                (recommendation_id,),
            ).fetchone()
        )
        return None if row is None else audit_from_row(row)

    async def customer_audit(
        self, user_id: str, since: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        require_positive_limit(limit)
        start = -(2**62) if since is None else to_microseconds(since)
        rows = await self._read(
            lambda db: db.execute(
                "SELECT served_us, body FROM audit_records WHERE user_id = ? AND served_us >= ?"
                " ORDER BY served_us DESC LIMIT ?",
                (user_id, start, limit),
            ).fetchall()
        )
        return [audit_from_row(row) for row in rows]

    async def count_audit(self) -> int:
        (total,) = await self._read(
            lambda db: db.execute("SELECT count(*) FROM audit_records").fetchone()
        )
        return int(total)

    async def purge_audit(self, before: datetime) -> int:
        end = to_microseconds(before)
        return await self._write(
            lambda db: db.execute("DELETE FROM audit_records WHERE served_us < ?", (end,)).rowcount
        )

    # --- erasure

    async def add_tombstone(self, tombstone: str, erased_at: datetime) -> bool:
        row = (tombstone, to_microseconds(erased_at))
        added = await self._write(
            lambda db: (
                db.execute(
                    "INSERT INTO erasure_tombstones (tombstone, erased_us) VALUES (?, ?)"
                    " ON CONFLICT (tombstone) DO NOTHING",
                    row,
                ).rowcount
            )
        )
        return added > 0

    async def tombstones(self) -> set[str]:
        rows = await self._read(
            lambda db: db.execute("SELECT tombstone FROM erasure_tombstones").fetchall()
        )
        return {tombstone for (tombstone,) in rows}

    async def erased_among(self, tombstones: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(tombstones))

        def read(db: sqlite3.Connection) -> set[str]:
            found = set()
            for chunk in _chunks(wanted, MAX_IN_PARAMETERS):
                query = (
                    f"SELECT tombstone FROM erasure_tombstones WHERE tombstone IN ({_marks(chunk)})"
                )
                found.update(tombstone for (tombstone,) in db.execute(query, chunk))
            return found

        return await self._read(read) if wanted else set()

    async def delete_customer(self, user_id: str) -> dict[str, int]:
        def delete(db: sqlite3.Connection) -> dict[str, int]:
            with write_transaction(db):
                return {
                    kind: db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount
                    for kind, table in CUSTOMER_TABLES.items()
                }

        return await self._write(delete)

    async def user_activity(
        self, user_ids: Sequence[str], types: Sequence[str], since: datetime
    ) -> InteractionColumns:
        users, kinds = list(dict.fromkeys(user_ids)), list(dict.fromkeys(types))
        if not users or not kinds:
            return InteractionColumns.from_documents([])
        start = to_microseconds(since)

        def read(db: sqlite3.Connection) -> list[tuple[int, str]]:
            rows = []
            for chunk in _chunks(users, MAX_IN_PARAMETERS - len(kinds)):
                rows += db.execute(
                    f"SELECT ts_us, body FROM interactions WHERE user_id IN ({_marks(chunk)})"
                    f" AND ts_us >= ? AND type IN ({_marks(kinds)})",
                    (*chunk, start, *kinds),
                ).fetchall()
            return rows

        rows = await self._read(read)
        times = np.array([row[0] for row in rows], dtype=np.float64) / 1e6
        return InteractionColumns.from_documents([orjson.loads(row[1]) for row in rows], times)

    async def put_profile(self, profile: CustomerProfile) -> bool:
        row = (
            profile.user_id,
            to_microseconds(profile.updated_at),
            profile.model_dump_json(exclude={"updated_at"}),
        )
        changed = await self._write(lambda db: db.execute(PUT_PROFILE, row).rowcount)
        return changed > 0

    async def put_consent(self, user_id: str, consent: bool, updated_at: datetime) -> bool:
        minimal = CustomerProfile(
            user_id=user_id, personalisation_consent=consent, updated_at=updated_at
        )
        row = (
            user_id,
            to_microseconds(updated_at),
            minimal.model_dump_json(exclude={"updated_at"}),
        )
        changed = await self._write(lambda db: db.execute(PUT_CONSENT, row).rowcount)
        return changed > 0

    async def customers_without_consent(self) -> set[str]:
        rows = await self._read(
            lambda db: db.execute(
                "SELECT user_id FROM customer_profiles"
                " WHERE body ->> '$.personalisation_consent' = 0"
            ).fetchall()
        )
        return {user_id for (user_id,) in rows}

    async def get_profile(self, user_id: str) -> CustomerProfile | None:
        return (await self.get_profiles([user_id])).get(user_id)

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, CustomerProfile]:
        users = list(dict.fromkeys(user_ids))

        def read(db: sqlite3.Connection) -> list[tuple[int, str]]:
            rows = []
            for chunk in _chunks(users, MAX_IN_PARAMETERS):
                rows += db.execute(
                    "SELECT updated_us, body FROM customer_profiles"
                    f" WHERE user_id IN ({_marks(chunk)})",
                    chunk,
                ).fetchall()
            return rows

        profiles = [
            CustomerProfile.model_validate(
                orjson.loads(body) | {"updated_at": EPOCH + timedelta(microseconds=updated_us)}
            )
            for updated_us, body in (await self._read(read) if users else [])
        ]
        return {profile.user_id: profile for profile in profiles}

    # --- plumbing

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            # Autocommit: transactions are explicit where they matter (insert_many); a lone SELECT
            # is its own read transaction, which keeps a scan's snapshot for as long as it runs.
            isolation_level=None,
            check_same_thread=False,
        )
        return db

    def _create_schema(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses at most the last commits on power loss, never on a crash of
            # the process, and spares an fsync per batch.
            db.execute("PRAGMA synchronous = NORMAL")
            # Five indexes take each insert to random pages; a larger page cache for the writer
            # keeps them in memory (measured: about a fifth off a 100k-row load).
            db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            db.executescript(SCHEMA)
            db.executescript(AUDIT_SCHEMA)
            db.executescript(ERASURE_SCHEMA)
            db.executescript(PROFILES_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _reader_connection(self) -> sqlite3.Connection:
        db = getattr(self._reader_local, "connection", None)
        if db is None:
            db = self._reader_local.connection = self._connect()
            with self._reader_connections_lock:
                self._reader_connections.append(db)
        return db

    async def _ensure_open(self) -> None:
        if self._writer is None:
            if not self._open_requested:
                raise StoreUnavailable(f"{self!r} is not open")
            await self.open()

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        await self._ensure_open()
        assert self._writer is not None and self._write_connection is not None
        return await self._run(self._writer, operation, self._write_connection)

    async def _read(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        await self._ensure_open()
        assert self._readers is not None
        return await self._run(self._readers, lambda: operation(self._reader_connection()))

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await self._run(None, function, *args)

    async def _run(
        self, executor: ThreadPoolExecutor | None, function: Callable[..., T], *args: Any
    ) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc


EVENT_COLUMNS = ("event_id", "user_id", "session_id", "type", "ts_us", "received_us", "body")
AUDIT_COLUMNS = ("recommendation_id", "user_id", "served_us", "body")


@lru_cache(maxsize=64)
def insert_new_sql(table: str, columns: tuple[str, ...], key: str, rows: int) -> str:
    """One INSERT of `rows` rows that skips a row whose `key` is stored (an event or an audit
    record written again after a timeout). Only that is skipped: `INSERT OR IGNORE` would also
    skip, silently, a row that breaks any other constraint, and count it as a duplicate."""
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"
        f" ON CONFLICT ({key}) DO NOTHING"
    )


def insert_events_sql(rows: int) -> str:
    return insert_new_sql("interactions", EVENT_COLUMNS, "event_id", rows)


def insert_rows(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert the rows, all or none; return how many were new."""
    chunks = list(statement_chunks(rows))
    if len(chunks) == 1:  # one statement, and so one transaction of its own (autocommit)
        count, values = chunks[0]
        return db.execute(insert_events_sql(count), values).rowcount
    db.execute("BEGIN IMMEDIATE")
    try:
        inserted = 0
        for count, values in chunks:
            inserted += db.execute(insert_events_sql(count), values).rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return inserted


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction around the block: committed when it returns, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def insert_one_by_one(
    db: sqlite3.Connection, events: Sequence[InteractionEvent]
) -> tuple[int, int, list[RefusedEvent]]:
    """Every event of the batch in order, one statement each, in one transaction: a statement that
    breaks a constraint is undone alone (SQLite's ABORT) and its event refused. Copies of an id are
    tried in turn, as MongoDB's unordered insert does. Returns (inserted, duplicates, refused)."""
    inserted = 0
    refused = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for index, event in enumerate(events):
            try:
                inserted += db.execute(insert_events_sql(1), event_row(event)).rowcount
                continue
            except sqlite3.IntegrityError as exc:
                reason = f"SQLite refused the row: {exc}"
            # An event already stored is a duplicate, whichever constraint SQLite checked first.
            stored = "SELECT 1 FROM interactions WHERE event_id = ?"
            if db.execute(stored, (event.event_id,)).fetchone() is None:
                refused.append(RefusedEvent(index, event.event_id, reason))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    duplicates = len(events) - inserted - len(refused)
    return inserted, duplicates, refused


def statement_chunks(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, list[Any]]]:
    """The rows by STATEMENT_ROWS: how many, and their values in one flat list."""
    for start in range(0, len(rows), STATEMENT_ROWS):
        chunk = rows[start : start + STATEMENT_ROWS]
        yield len(chunk), [value for row in chunk for value in row]


def to_microseconds(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC, like event timestamps."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MICROSECOND


def event_row(event: InteractionEvent) -> tuple[Any, ...]:
    received_at = event.received_at
    return (
        event.event_id,
        event.user_id,
        event.session_id,
        event.type.value,
        to_microseconds(event.timestamp),
        None if received_at is None else to_microseconds(received_at),
        # `to_document()` without the datetime columns, as JSON: the same text orjson would write
        # from it, in a quarter less time (a fifth less than `model_dump_json`).
        EVENT_SERIALIZER.to_json(event, exclude_none=True, exclude=DATETIME_COLUMNS).decode(),
    )


def audit_row(record: AuditRecord) -> tuple[str, str | None, int, str]:
    document = record.to_document()
    del document["served_at"]  # the integer column
    return (
        record.recommendation_id,
        record.user_id,
        to_microseconds(record.served_at),
        orjson.dumps(document).decode(),
    )


def audit_from_row(row: tuple[int, str]) -> AuditRecord:
    served_us, body = row
    document = orjson.loads(body)
    document["served_at"] = EPOCH + timedelta(microseconds=served_us)
    return AuditRecord.from_document(document)


def row_document(row: tuple[int, int | None, str]) -> dict[str, Any]:
    ts_us, received_us, body = row
    document: dict[str, Any] = orjson.loads(body)
    document["timestamp"] = EPOCH + timedelta(microseconds=ts_us)
    if received_us is not None:
        document["received_at"] = EPOCH + timedelta(microseconds=received_us)
    return document


def feedback_events(rows: Sequence[tuple[int, str]]) -> list[FeedbackEvent]:
    """(ts_us, body) rows as feedback; a body that cannot be read is left out."""
    events = []
    for ts_us, body in rows:
        try:
            events.append(FeedbackEvent.from_document(orjson.loads(body), ts_us / 1e6))
        except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError):
            continue
    return events


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def require_positive_limit(limit: int) -> None:
    # SQLite reads LIMIT -1 as "no limit" and MongoDB reads 0 that way: refuse both alike.
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
