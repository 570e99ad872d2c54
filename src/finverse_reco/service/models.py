"""The serving model: one immutable index, swapped whole by reference."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path

from finverse_reco.index import EmbeddingIndex
from finverse_reco.model.artifacts import (
    CURRENT_FILE,
    VERSIONS_DIR,
    ArtifactError,
    current_version,
    load_version,
)

log = logging.getLogger(__name__)


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
    """

    def __init__(self, holder: ModelHolder, model_dir: Path, poll_seconds: float) -> None:
        self._holder = holder
        self._model_dir = Path(model_dir)
        self._poll_seconds = poll_seconds
        self._refused: tuple[str, tuple] | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        """Swap in CURRENT if it names a version other than the one serving. True if swapped."""
        try:
            version = await asyncio.to_thread(current_version, self._model_dir)
        except ArtifactError as exc:
            await self._refuse(CURRENT_FILE, exc)
            return False
        if version is None:
            return False
        if version == self._holder.version:
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

    async def serve_also(self, versions: set[str]) -> dict[str, str]:
        """Keep these versions loaded beside CURRENT (two model versions side by side for an
        experiment), dropping the ones no longer wanted. Returns why a version could not be
        loaded, by name; those are not served (requests for them get CURRENT)."""
        kept = {v: i for v, i in self._holder.also_serving.items() if v in versions}
        refused = {}
        for version in sorted(versions - kept.keys()):
            try:
                kept[version] = await asyncio.to_thread(load_version, self._model_dir, version)
            except ArtifactError as exc:
                refused[version] = exc.reason
                log.error("model version %s not served beside CURRENT: %s", version, exc.reason)
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
