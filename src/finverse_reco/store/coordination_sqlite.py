"""The training lease and refresh jobs in the SQLite store's file (see store/coordination.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from finverse_reco.store.base import StoreUnavailable
from finverse_reco.store.coordination import FINISHED_JOBS_KEPT, LEASE_NAME, Lease

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS training_lease (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_jobs (
    job_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, running INTEGER NOT NULL, record TEXT NOT NULL
);
"""


class SQLiteCoordination:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms

    def __repr__(self) -> str:
        return f"SQLiteCoordination({str(self.path)!r})"

    async def open(self) -> None:
        def create(db: sqlite3.Connection) -> None:
            db.executescript(SCHEMA)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._run(create)

    async def close(self) -> None:
        return None

    async def acquire_lease(self, holder: str, ttl_seconds: float) -> Lease | None:
        def acquire(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")  # read and write the row under one write lock
            row = db.execute(
                "SELECT token, expires_at FROM training_lease WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
            if row is not None and row[1] > now:
                return None
            lease = Lease(holder, (row[0] if row else 0) + 1, now + ttl_seconds)
            db.execute(
                "INSERT OR REPLACE INTO training_lease (name, holder, token, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (LEASE_NAME, lease.holder, lease.token, lease.expires_at),
            )
            return lease

        return await self._run(acquire)

    async def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        def renew(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            renewed = Lease(lease.holder, lease.token, now + ttl_seconds)
            changed = db.execute(
                "UPDATE training_lease SET expires_at = ? "
                "WHERE name = ? AND token = ? AND holder = ? AND expires_at > ?",
                (renewed.expires_at, LEASE_NAME, lease.token, lease.holder, now),
            ).rowcount
            return renewed if changed else None

        return await self._run(renew)

    async def release_lease(self, lease: Lease) -> None:
        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE training_lease SET expires_at = 0 WHERE name = ? AND token = ?",
                (LEASE_NAME, lease.token),
            )

        await self._run(release)

    async def save_job(self, job: dict[str, Any]) -> None:
        def save(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO refresh_jobs (job_id, started_at, running, record) "
                "VALUES (?, ?, ?, ?)",
                (job["job_id"], job["started_at"], job["state"] == "running", orjson.dumps(job)),
            )
            db.execute(
                "DELETE FROM refresh_jobs WHERE running = 0 AND job_id NOT IN (SELECT job_id "
                "FROM refresh_jobs WHERE running = 0 ORDER BY started_at DESC LIMIT ?)",
                (FINISHED_JOBS_KEPT,),
            )

        await self._run(save)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        def find(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT record FROM refresh_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return orjson.loads(row[0]) if row else None

        return await self._run(find)

    async def update_job_progress(self, job_id: str, done: int, total: int) -> None:
        def update(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT record FROM refresh_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return
            record = orjson.loads(row[0])
            record["progress"] = {"epochs_done": done, "epochs_total": total}
            db.execute(
                "UPDATE refresh_jobs SET record = ? WHERE job_id = ?",
                (orjson.dumps(record), job_id),
            )

        await self._run(update)

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        def in_transaction() -> T:
            # Autocommit; an operation that reads then writes opens BEGIN IMMEDIATE itself.
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None
            )
            try:
                result = operation(db)
                if db.in_transaction:
                    db.execute("COMMIT")
                return result
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()

        try:
            return await asyncio.to_thread(in_transaction)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite coordination {self.path}: {exc}") from exc
