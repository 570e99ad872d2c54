"""The serving model: one immutable index, swapped whole by reference."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import shutil
import time
from pathlib import Path

from finverse_reco.index import EmbeddingIndex
from finverse_reco.model.artifacts import (
    CURRENT_FILE,
    STAGING_PREFIX,
    VERSIONS_DIR,
    ArtifactError,
    activate,
    current_version,
    list_versions,
    load_version,
    prune,
)
from finverse_reco.store import StoreUnavailable
from finverse_reco.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

# Versions a replica keeps in its cache with FINVERSE_ARTIFACTS=store: the active one and the one
# before it (what was serving until the swap).
CACHED_VERSIONS_KEPT = 2


def category_of(index: EmbeddingIndex, product_id: str) -> str | None:
    """A product's category as `index` knows it (None: unknown)."""
    row = index.items.row(product_id)
    return None if row is None else index.item_meta(row)[0] or None


class ModelHolder:
    """Holds the index every request reads. A request takes `holder.index` once and keeps that object,
    so a swap in the middle of a request never mixes two versions."""

    def __init__(self, index: EmbeddingIndex | None = None) -> None:
        self.index = index
        self.loaded_at = time.time() if index is not None else None
        # Why CURRENT is not what this process serves; None while it is.
        self.last_refusal: str | None = None
        # Versions served beside CURRENT (an experiment's arms), by name; replaced whole.
        self.also_serving: dict[str, EmbeddingIndex] = {}

    @property
    def version(self) -> str | None:
        return self.index.version if self.index is not None else None

    def category_of(self, product_id: str) -> str | None:
        """A product's category as the serving model knows it (None: unknown)."""
        return None if self.index is None else category_of(self.index, product_id)

    def index_of(self, version: str | None) -> EmbeddingIndex | None:
        """The index of `version` if this process serves it (CURRENT or beside it), else None;
        `version=None` is CURRENT."""
        index = self.index
        if version is None or (index is not None and index.version == version):
            return index
        return self.also_serving.get(version)

    def swap(self, index: EmbeddingIndex) -> None:
        self.index = index  # one reference assignment: atomic for every reader
        self.loaded_at = time.time()


class ModelWatcher:
    """Polls the model directory's CURRENT pointer and swaps in a new version when it changes.

    Loading happens in a thread (it reads and checksums arrays); a version that fails to load is
    refused, logged and the old one keeps serving. A refused version is tried again only once its
    files change (a copy onto a shared volume may still be arriving), not on every poll.

    With a `remote` artifact store (FINVERSE_ARTIFACTS=store) the model directory is a local cache:
    each poll asks the store for its active version first, downloads one this replica lacks into a
    staging directory, renames it into place, and points the local CURRENT at it only once its
    checksums verify. A copy that fails is deleted and not fetched again until the store's active
    version changes.
    """

    def __init__(
        self,
        holder: ModelHolder,
        model_dir: Path,
        poll_seconds: float,
        remote: ArtifactStore | None = None,
    ) -> None:
        self._holder = holder
        self._model_dir = Path(model_dir)
        self._poll_seconds = poll_seconds
        self._remote = remote
        self._refused: tuple[str, tuple] | None = None
        self._refused_remote: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        """Swap in CURRENT if it names a version other than the one serving. True if swapped."""
        if self._remote is not None:
            try:
                await self._follow_remote()
            except StoreUnavailable as exc:  # the cache keeps serving what it has
                log.warning(
                    "artifact store unavailable, still serving %s: %s", self._holder.version, exc
                )
        try:
            version = await asyncio.to_thread(current_version, self._model_dir)
        except ArtifactError as exc:
            await self._refuse(CURRENT_FILE, exc)
            return False
        if version is None:
            return False
        if version == self._holder.version:
            if self._refused_remote is None:  # else the store's active version was refused
                self._holder.last_refusal = None
            return False
        if self._refused == (version, await asyncio.to_thread(self._fingerprint, version)):
            return False
        try:
            index = await asyncio.to_thread(load_version, self._model_dir, version)
        except ArtifactError as exc:
            await self._refuse(version, exc)
            return False
        self._holder.swap(index)
        # The index holds about one Python object per user and item, alive until the next swap.
        # A full collection walking them paused the event loop for ~90 ms at 100,000 users, which
        # was the serving p99 under load (bench/serving.py). Frozen, the collector skips them;
        # reference counting still frees them once a later swap drops the index.
        gc.freeze()
        self._holder.last_refusal = None
        self._refused = None
        log.info("model version %s now serving", version)
        return True

    async def _follow_remote(self) -> None:
        """Make the local CURRENT name the store's active version, downloading it if needed."""
        assert self._remote is not None
        version = await self._remote.current()
        if version is None or version == self._refused_remote:
            return
        if version == await asyncio.to_thread(self._local_current):
            return
        try:
            await self.ensure_local(version)
            await asyncio.to_thread(activate, self._model_dir, version)  # verifies, then points
            # A cache, not an archive: the store keeps the versions (a rollback downloads again).
            await asyncio.to_thread(prune, self._model_dir, CACHED_VERSIONS_KEPT)
        except ArtifactError as exc:
            await asyncio.to_thread(
                shutil.rmtree, self._model_dir / VERSIONS_DIR / version, ignore_errors=True
            )
            self._refused_remote = version
            self._holder.last_refusal = exc.reason
            log.error(
                "model version %s from the artifact store refused, still serving %s: %s",
                version,
                self._holder.version,
                exc.reason,
            )
            return
        self._refused_remote = None

    async def ensure_local(self, version: str) -> None:
        """A copy of `version` in the model directory (downloaded from the store if missing)."""
        if self._remote is None or version in await asyncio.to_thread(
            list_versions, self._model_dir
        ):
            return
        versions = self._model_dir / VERSIONS_DIR
        staging = versions / f"{STAGING_PREFIX}{version}-{secrets.token_hex(4)}"
        await asyncio.to_thread(versions.mkdir, parents=True, exist_ok=True)
        try:
            await self._remote.fetch_version(version, staging)
            try:
                await asyncio.to_thread(staging.rename, versions / version)
            except OSError:
                if not (versions / version).is_dir():
                    raise  # else another worker sharing this cache stored it first
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, ignore_errors=True)
        log.info("model version %s downloaded from the artifact store", version)

    def _local_current(self) -> str | None:
        try:
            return current_version(self._model_dir)
        except ArtifactError:
            return None

    async def serve_also(self, versions: set[str]) -> dict[str, str]:
        """Keep these versions loaded beside CURRENT (two model versions side by side for an
        experiment), dropping the ones no longer wanted. Returns why a version could not be
        loaded, by name; those are not served (requests for them get CURRENT)."""
        kept = {v: i for v, i in self._holder.also_serving.items() if v in versions}
        refused = {}
        for version in sorted(versions - kept.keys()):
            try:
                await self.ensure_local(version)
                kept[version] = await asyncio.to_thread(load_version, self._model_dir, version)
            except (ArtifactError, StoreUnavailable) as exc:
                refused[version] = str(exc)
                log.error("model version %s not served beside CURRENT: %s", version, exc)
        if kept.keys() != self._holder.also_serving.keys():
            self._holder.also_serving = kept  # one reference assignment, as for CURRENT
            gc.freeze()
        return refused

    async def _refuse(self, name: str, exc: ArtifactError) -> None:
        refused = (name, await asyncio.to_thread(self._fingerprint, name))
        if refused == self._refused:
            return  # already logged; nothing changed on disk since
        self._refused = refused
        self._holder.last_refusal = exc.reason
        log.error(
            "model version refused, still serving %s: %s",
            self._holder.version,
            exc.reason,
            extra={"refused": name, "serving": self._holder.version},
        )

    def _fingerprint(self, name: str) -> tuple:
        """What the refused files look like now: names, sizes and modification times."""
        path = self._model_dir / (
            CURRENT_FILE if name == CURRENT_FILE else f"{VERSIONS_DIR}/{name}"
        )
        try:
            if path.is_file():
                stat = path.stat()
                return ((path.name, stat.st_size, stat.st_mtime_ns),)
            return tuple(
                sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir())
            )
        except OSError:
            return ()

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # the watcher must outlive any surprise; the old model keeps serving
                log.exception("model watcher check failed")
            await asyncio.sleep(self._poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
