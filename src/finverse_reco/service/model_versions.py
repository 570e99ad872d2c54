"""Model versions for operators: what each one is (its manifest, size, guardrail verdict) and rolling
back to one. The same operations as `finverse-reco models list / activate`, for the admin API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from finverse_reco.model.artifacts import (
    VERSIONS_DIR,
    ArtifactError,
    activate,
    current_version,
    list_versions,
    load_version,
    read_manifest,
)
from finverse_reco.service.models import ModelHolder, ModelWatcher


class UnknownVersion(LookupError):
    """No complete version of that name in the model directory."""


class ModelVersions:
    def __init__(self, model_dir: Path, models: ModelHolder, watcher: ModelWatcher) -> None:
        self._model_dir = Path(model_dir)
        self._models = models
        self._watcher = watcher

    async def describe(self) -> dict[str, Any]:
        """Every version, newest first, with the active one (CURRENT) and the one this process serves."""
        return await asyncio.to_thread(self._describe)

    async def activate(self, version: str) -> dict[str, Any]:
        """Point CURRENT at `version` after loading it fully (checksums and contents), then swap it
        in here at once; other replicas follow within their poll interval.
        Raises UnknownVersion, or ArtifactError when the version cannot be trusted."""
        previous = await asyncio.to_thread(current_version, self._model_dir)
        await asyncio.to_thread(self._activate, version)
        await self._watcher.check_once()
        return {"active": version, "previous": previous, "serving": self._models.version}

    def _activate(self, version: str) -> None:
        if version not in list_versions(self._model_dir):
            raise UnknownVersion(f"no model version {version}")
        load_version(self._model_dir, version)
        activate(self._model_dir, version)

    def _describe(self) -> dict[str, Any]:
        active = current_version(self._model_dir)
        return {
            "active": active,
            "serving": self._models.version,
            "versions": [
                self._version(name, active) for name in reversed(list_versions(self._model_dir))
            ],
        }

    def _version(self, name: str, active: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "version": name,
            "active": name == active,
            "bytes_on_disk": _size(self._model_dir / VERSIONS_DIR / name),
        }
        try:
            manifest = read_manifest(self._model_dir, name)
        except ArtifactError as exc:  # a broken version is listed as broken, not hidden
            return {**row, "error": exc.reason}
        return {
            **row,
            "created_at": manifest.get("created_at"),
            "shape": manifest.get("shape") or {},
            "counts": manifest.get("counts") or {},
            "data_window": manifest.get("data_window"),
            "metrics": manifest.get("metrics") or {},
            "parameters": manifest.get("parameters") or {},
            # Whether training activated it, and why (a version from before the guardrail: None).
            "guardrail": {
                "activated": manifest.get("activated"),
                "reason": manifest.get("activation_reason"),
            },
            "error": None,
        }


def _size(directory: Path) -> int:
    try:
        return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())
    except OSError:
        return 0
