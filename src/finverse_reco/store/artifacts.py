"""Where model versions live and which one is active, behind one protocol.

    dir    (default) the model directory itself: `model/artifacts.py`'s layout, CURRENT its pointer.
    store  the interaction store's database: MongoDB GridFS (`artifacts_mongo.py`) or a blob table
           in SQLite (`artifacts_sqlite.py`); the model directory is then only this process's
           local cache, filled by `ModelWatcher` from the store.

Every implementation keeps the same promises (tests/contract/test_artifact_stores.py):
- a version is visible (`list_versions`, `activate`, `fetch_version`) only once every file the
  manifest lists has been stored with the size and sha256 the manifest says; an upload that
  fails, is cut off or carries a corrupt file leaves no version behind;
- versions are immutable: storing a name again is refused;
- `activate` switches the pointer in one step, and with a fencing token only while no newer
  training lease has raised the fence (`raise_fence`): a trainer that lost its lease cannot
  activate what it trained.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from finverse_reco.model import artifacts as local
from finverse_reco.model.artifacts import (
    MANIFEST_FILE,
    STAGING_PREFIX,
    VERSIONS_DIR,
    ArtifactError,
)

CHUNK_BYTES = 1 << 20
FENCE_FILE = "FENCE"
FENCE_LOCK_FILE = ".fence.lock"


class FencedOut(ArtifactError):
    """A newer training lease raised the fence: this trainer's activation is refused."""


@runtime_checkable
class ArtifactStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put_version(self, version: str, source: Path) -> None:
        """Store the complete version directory `source` (its manifest and every file it lists),
        checking each file against the manifest as it goes. Raises ArtifactError for a corrupt or
        incomplete source or a name already stored; on any failure the version stays invisible."""

    async def list_versions(self) -> list[str]:
        """Complete versions, oldest first."""

    async def manifest(self, version: str) -> dict[str, Any]:
        """A complete version's manifest; ArtifactError if there is no such version."""

    async def fetch_version(self, version: str, into: Path) -> None:
        """Write the version's files into the new directory `into` (not verified: the caller
        verifies the copy it will load)."""

    async def current(self) -> str | None:
        """The active version, None before any activation."""

    async def activate(self, version: str, fence: int | None = None) -> None:
        """Make a complete version active in one step. With `fence`, only if no lease newer than
        that token raised the fence (else FencedOut); without, unconditionally (a rollback)."""

    async def raise_fence(self, token: int) -> None:
        """From now on refuse activations fenced below `token` (a new lease was granted)."""

    async def delete_version(self, version: str) -> None:
        """Remove a version that is not active (pruning)."""


async def prune_versions(store: ArtifactStore, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions, never the active one. Returns the names removed."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    active = await store.current()
    versions = await store.list_versions()
    removed = [v for v in versions[: max(len(versions) - keep, 0)] if v != active]
    for version in removed:
        await store.delete_version(version)
    return removed


def checked_files(version: str, source: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """The manifest of a version directory about to be stored and its files (manifest last), after
    checking that the manifest names this version and lists only plain file names."""
    if not local.VERSION_RE.match(version):
        raise ArtifactError(f"not a version name: {version[:80]!r}")
    manifest = _read_manifest_at(source, version)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"version {version}: the manifest lists no files")
    for name in files:
        if "/" in name or name.startswith(".") or name == MANIFEST_FILE:
            raise ArtifactError(f"version {version}: malformed manifest entry for {name!r}")
    return manifest, [
        *((name, source / name) for name in files),
        (MANIFEST_FILE, source / MANIFEST_FILE),
    ]


def _read_manifest_at(source: Path, version: str) -> dict[str, Any]:
    try:
        manifest = orjson.loads((source / MANIFEST_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ArtifactError(f"version {version}: unreadable {MANIFEST_FILE} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != local.FORMAT_VERSION:
        raise ArtifactError(f"version {version}: not a format-{local.FORMAT_VERSION} manifest")
    if manifest.get("model_version") != version:
        raise ArtifactError(f"version {version}: the manifest names another version")
    return manifest


class ChecksumReader:
    """Reads a file in chunks for an upload, and at the end compares what was read with what the
    manifest expects: the stored copy is exactly what was checked."""

    def __init__(self, version: str, name: str, path: Path, expected: dict[str, Any] | None):
        self.version, self.name, self.path, self.expected = version, name, path, expected
        self.digest = hashlib.sha256()
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        try:
            with self.path.open("rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    self.digest.update(chunk)
                    self.size += len(chunk)
                    yield chunk
        except FileNotFoundError:
            raise ArtifactError(f"version {self.version}: {self.name} is missing") from None
        self.check()

    def check(self) -> None:
        if self.expected is None:
            return  # the manifest itself: it was parsed and checked before the upload
        if self.size != self.expected.get("bytes") or self.digest.hexdigest() != self.expected.get(
            "sha256"
        ):
            raise ArtifactError(
                f"version {self.version}: {self.name} does not match its manifest entry "
                "(corrupt or truncated); not stored"
            )


async def read_chunks(reader: ChecksumReader) -> AsyncIterator[bytes]:
    """`reader.chunks()` with each disk read in a thread."""
    chunks = reader.chunks()
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


class DirectoryArtifactStore:
    """The model directory as the store (FINVERSE_ARTIFACTS=dir): versions are directories,
    CURRENT the pointer, FENCE the highest lease token granted (both changed under a file lock)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)

    def __repr__(self) -> str:
        return f"DirectoryArtifactStore({str(self.model_dir)!r})"

    async def open(self) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def put_version(self, version: str, source: Path) -> None:
        await asyncio.to_thread(self._put, version, Path(source))

    def _put(self, version: str, source: Path) -> None:
        target = self.model_dir / VERSIONS_DIR / version
        if source.resolve() == target.resolve():
            local.verify_version(
                self.model_dir, version
            )  # written here by training: nothing to copy
            return
        manifest, files = checked_files(version, source)
        if target.exists():
            raise ArtifactError(f"version {version} is already stored (versions are immutable)")
        staging = (
            self.model_dir / VERSIONS_DIR / f"{STAGING_PREFIX}{version}-{secrets.token_hex(4)}"
        )
        staging.mkdir(parents=True)
        try:
            for name, path in files:
                reader = ChecksumReader(version, name, path, manifest["files"].get(name))
                with (staging / name).open("wb") as out:
                    for chunk in reader.chunks():
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            self._commit(staging, target)
        except BaseException:
            self._discard(staging)
            raise

    def _commit(self, staging: Path, target: Path) -> None:
        """The one step that makes a stored version visible."""
        staging.rename(target)

    def _discard(self, staging: Path) -> None:
        # A staging directory left by a crash is never listed; `model.artifacts.prune` removes it.
        shutil.rmtree(staging, ignore_errors=True)

    async def list_versions(self) -> list[str]:
        return local.list_versions(self.model_dir)

    async def manifest(self, version: str) -> dict[str, Any]:
        return local.read_manifest(self.model_dir, version)

    async def fetch_version(self, version: str, into: Path) -> None:
        source = self.model_dir / VERSIONS_DIR / version
        if version not in local.list_versions(self.model_dir):
            raise ArtifactError(f"no model version {version}")
        await asyncio.to_thread(shutil.copytree, source, into)

    async def current(self) -> str | None:
        return local.current_version(self.model_dir)

    async def activate(self, version: str, fence: int | None = None) -> None:
        await asyncio.to_thread(self._activate, version, fence)

    def _activate(self, version: str, fence: int | None) -> None:
        if version not in local.list_versions(self.model_dir):
            raise ArtifactError(f"no model version {version}")
        with self._fence_lock():
            if fence is not None and fence < self._fence():
                raise FencedOut(
                    f"version {version} not activated: a newer training lease "
                    f"(token {self._fence()}) replaced this trainer's (token {fence})"
                )
            local.activate(self.model_dir, version)

    async def raise_fence(self, token: int) -> None:
        def write() -> None:
            with self._fence_lock():
                if token > self._fence():
                    pending = self.model_dir / f".{FENCE_FILE}.{os.getpid()}"
                    pending.write_text(str(token))
                    os.replace(pending, self.model_dir / FENCE_FILE)

        await asyncio.to_thread(write)

    async def delete_version(self, version: str) -> None:
        if version == local.current_version(self.model_dir):
            raise ArtifactError(f"version {version} is active; activate another first")
        shutil.rmtree(self.model_dir / VERSIONS_DIR / version, ignore_errors=True)

    def _fence(self) -> int:
        try:
            return int((self.model_dir / FENCE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    @contextmanager
    def _fence_lock(self) -> Iterator[None]:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with (self.model_dir / FENCE_LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
