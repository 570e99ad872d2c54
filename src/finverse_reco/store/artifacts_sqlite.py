"""Model versions in the SQLite store's file (FINVERSE_ARTIFACTS=store with a sqlite:/// URL).

Files are kept as 1 MiB chunks (no blob is ever read whole into one statement). A version is
stored in one transaction whose last write is its row in `artifact_versions`: a cut-off upload
leaves nothing. The active version and the fence are one row, changed by one conditional UPDATE.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from finverse_reco.model.artifacts import MANIFEST_FILE, ArtifactError
from finverse_reco.store.artifacts import ChecksumReader, FencedOut, checked_files
from finverse_reco.store.base import StoreUnavailable

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifact_chunks (
    version TEXT NOT NULL, name TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (version, name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifact_versions (
    version TEXT PRIMARY KEY, manifest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS model_pointer (
    id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT, fence INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO model_pointer (id, version, fence) VALUES (1, NULL, 0);
"""


class SQLiteArtifactStore:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms

    def __repr__(self) -> str:
        return f"SQLiteArtifactStore({str(self.path)!r})"

    async def open(self) -> None:
        def create() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connection() as db:
                db.executescript(SCHEMA)

        await self._run(create)

    async def close(self) -> None:
        return None  # a connection per operation: nothing held open

    async def put_version(self, version: str, source: Path) -> None:
        await self._run(self._put, version, Path(source))

    def _put(self, version: str, source: Path) -> None:
        manifest, files = checked_files(version, source)
        with self._connection() as db:
            if db.execute(
                "SELECT 1 FROM artifact_versions WHERE version = ?", (version,)
            ).fetchone():
                raise ArtifactError(f"version {version} is already stored (versions are immutable)")
            # One transaction: a failure anywhere (or a killed process) rolls every chunk back.
            for name, path in files:
                reader = ChecksumReader(version, name, path, manifest["files"].get(name))
                for seq, chunk in enumerate(reader.chunks()):
                    db.execute(
                        "INSERT INTO artifact_chunks (version, name, seq, data) VALUES (?, ?, ?, ?)",
                        (version, name, seq, chunk),
                    )
            self._commit(db, version, manifest)

    def _commit(self, db: sqlite3.Connection, version: str, manifest: dict[str, Any]) -> None:
        """The one write that makes a stored version visible."""
        db.execute(
            "INSERT INTO artifact_versions (version, manifest) VALUES (?, ?)",
            (version, orjson.dumps(manifest).decode()),
        )

    async def list_versions(self) -> list[str]:
        def query() -> list[str]:
            with self._connection() as db:
                rows = db.execute(
                    "SELECT version FROM artifact_versions ORDER BY version"
                ).fetchall()
            return [row[0] for row in rows]

        return await self._run(query)

    async def manifest(self, version: str) -> dict[str, Any]:
        def query() -> dict[str, Any]:
            with self._connection() as db:
                row = db.execute(
                    "SELECT manifest FROM artifact_versions WHERE version = ?", (version,)
                ).fetchone()
            if row is None:
                raise ArtifactError(f"no model version {version}")
            return orjson.loads(row[0])

        return await self._run(query)

    async def fetch_version(self, version: str, into: Path) -> None:
        manifest = await self.manifest(version)

        def write() -> None:
            into.mkdir(parents=True)
            with self._connection() as db:
                for name in [*manifest["files"], MANIFEST_FILE]:
                    with (into / name).open("wb") as out:
                        cursor = db.execute(
                            "SELECT data FROM artifact_chunks WHERE version = ? AND name = ? "
                            "ORDER BY seq",
                            (version, name),
                        )
                        for (chunk,) in cursor:
                            out.write(chunk)

        await self._run(write)

    async def current(self) -> str | None:
        def query() -> str | None:
            with self._connection() as db:
                return db.execute("SELECT version FROM model_pointer WHERE id = 1").fetchone()[0]

        return await self._run(query)

    async def activate(self, version: str, fence: int | None = None) -> None:
        def update() -> None:
            with self._connection() as db:
                known = db.execute(
                    "SELECT 1 FROM artifact_versions WHERE version = ?", (version,)
                ).fetchone()
                if not known:
                    raise ArtifactError(f"no model version {version}")
                changed = db.execute(
                    "UPDATE model_pointer SET version = ? WHERE id = 1 AND fence <= ?",
                    (version, fence if fence is not None else 2**62),
                ).rowcount
                if not changed:
                    newer = db.execute("SELECT fence FROM model_pointer WHERE id = 1").fetchone()[0]
                    raise FencedOut(
                        f"version {version} not activated: a newer training lease (token "
                        f"{newer}) replaced this trainer's (token {fence})"
                    )

        await self._run(update)

    async def raise_fence(self, token: int) -> None:
        def update() -> None:
            with self._connection() as db:
                db.execute("UPDATE model_pointer SET fence = max(fence, ?) WHERE id = 1", (token,))

        await self._run(update)

    async def delete_version(self, version: str) -> None:
        def delete() -> None:
            with self._connection() as db:
                active = db.execute("SELECT version FROM model_pointer WHERE id = 1").fetchone()[0]
                if version == active:
                    raise ArtifactError(f"version {version} is active; activate another first")
                db.execute("DELETE FROM artifact_versions WHERE version = ?", (version,))
                db.execute("DELETE FROM artifact_chunks WHERE version = ?", (version,))

        await self._run(delete)

    def _connection(self) -> sqlite3.Connection:
        """A connection whose `with` block is one transaction (committed, or rolled back)."""
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)
        return _Transaction(db)  # type: ignore[return-value]

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(function, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"SQLite artifact store {self.path}: {exc}") from exc


class _Transaction:
    """`with` a connection: commit or roll back, then close (sqlite3's own `with` does not close)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            if kind is None:
                self.db.commit()
            else:
                self.db.rollback()
        finally:
            self.db.close()
