"""Model versions for operators: what each one is (its manifest, size, guardrail verdict) and rolling
back to one. The same operations as `finverse-reco models list / activate`, for the admin API, on
whichever artifact store holds the versions (the model directory or the store's database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from finverse_reco.model.artifacts import ArtifactError, load_version
from finverse_reco.service.models import ModelHolder, ModelWatcher
from finverse_reco.store.artifacts import ArtifactStore


class UnknownVersion(LookupError):
    """No complete version of that name in the artifact store."""


class ModelVersions:
    def __init__(
        self,
        artifacts: ArtifactStore,
        models: ModelHolder,
        watcher: ModelWatcher,
        model_dir: Path,
    ) -> None:
        self._artifacts = artifacts
        self._models = models
        self._watcher = watcher
        self._model_dir = model_dir  # where this process loads versions from (its cache)

    async def describe(self) -> dict[str, Any]:
        """Every version, newest first, with the active one and the one this process serves."""
        active = await self._artifacts.current()
        names = await self._artifacts.list_versions()
        return {
            "active": active,
            "serving": self._models.version,
            "versions": [await self._version(name, active) for name in reversed(names)],
        }

    async def activate(self, version: str) -> dict[str, Any]:
        """Make `version` active after loading it fully here (checksums and contents), then swap it
        in here at once; other replicas follow within their poll interval.
        Raises UnknownVersion, or ArtifactError when the version cannot be trusted."""
        if version not in await self._artifacts.list_versions():
            raise UnknownVersion(f"no model version {version}")
        previous = await self._artifacts.current()
        await self._watcher.ensure_local(version)
        await asyncio.to_thread(load_version, self._model_dir, version)
        await self._artifacts.activate(version)  # an operator's rollback is not fenced
        await self._watcher.check_once()
        return {"active": version, "previous": previous, "serving": self._models.version}

    async def _version(self, name: str, active: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {"version": name, "active": name == active, "bytes_on_disk": 0}
        try:
            manifest = await self._artifacts.manifest(name)
        except ArtifactError as exc:  # a broken version is listed as broken, not hidden
            return {**row, "error": exc.reason}
        files = manifest.get("files") or {}
        return {
            **row,
            # The arrays and mappings the manifest lists (the manifest itself is a few KB).
            "bytes_on_disk": sum(int(entry.get("bytes", 0)) for entry in files.values()),
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
