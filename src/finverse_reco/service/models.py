"""The serving model: one immutable index, swapped whole by reference."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from finverse_reco.model.artifacts import ArtifactError, current_version, load_version

from finverse_reco.index import EmbeddingIndex

log = logging.getLogger(__name__)


class ModelHolder:
    """Holds the index every request reads. A request takes `holder.index` once and keeps that object,
    so a swap in the middle of a request never mixes two versions."""

    def __init__(self, index: EmbeddingIndex | None = None) -> None:
        self.index = index
        self.loaded_at = time.time() if index is not None else None
        self.last_refusal: str | None = None

    @property
    def version(self) -> str | None:
        return self.index.version if self.index is not None else None

    def swap(self, index: EmbeddingIndex) -> None:
        self.index = index  # one reference assignment: atomic for every reader
        self.loaded_at = time.time()


class ModelWatcher:
    """Polls the model directory's CURRENT pointer and swaps in a new version when it changes.

    Loading happens in a thread (it reads and checksums arrays); a version that fails to load is
    refused, logged, remembered (so it is not retried every poll) and the old one keeps serving.
    """

    def __init__(self, holder: ModelHolder, model_dir: Path, poll_seconds: float) -> None:
        self._holder = holder
        self._model_dir = Path(model_dir)
        self._poll_seconds = poll_seconds
        self._refused: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        """Swap in CURRENT if it names a version other than the one serving. True if swapped."""
        version = await asyncio.to_thread(current_version, self._model_dir)
        if version is None or version == self._holder.version or version == self._refused:
            return False
        try:
            index = await asyncio.to_thread(load_version, self._model_dir, version)
        except ArtifactError as exc:
            self._refused = version
            self._holder.last_refusal = f"{version}: {exc}"
            log.error("model version refused, still serving %s: %s", self._holder.version, exc)
            return False
        self._holder.swap(index)
        log.info("model version %s now serving", version)
        return True

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
