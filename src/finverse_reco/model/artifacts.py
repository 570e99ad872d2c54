"""Versioned model artifacts on disk: arrays (.npz, no pickle), JSON mappings, a checksummed manifest.

    model_dir/
      CURRENT                         the active version's name (replaced atomically)
      versions/<version>/             complete versions only
        arrays.npz  mappings.json  manifest.json
      versions/.staging-<version>/    a version being written (never listed, never loaded)

A version is written completely into a staging directory, fsynced, then renamed into place; only
then can `activate` point CURRENT at it. Loading verifies every checksum first, so a corrupt,
truncated or half-copied version raises `ArtifactError` and whatever was serving keeps serving.
Version names sort by creation time, to the millisecond: `20261127T101500Z-1a2b3c`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from finverse_reco.index import ARRAY_FIELDS, FEATURE_ROW_FIELDS, EmbeddingIndex
from finverse_reco.pipeline.features import FeatureConfig

FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.npz"
MAPPINGS_FILE = "mappings.json"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
STAGING_PREFIX = ".staging-"
# A staging directory this old belongs to a writer that died; younger ones may still be written.
STALE_STAGING_SECONDS = 3600.0
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_RESERVED_KEYS = frozenset({"format_version", "model_version", "created_at", "files"})
_CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """A model version that cannot be trusted or found; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_version_name(created_at: datetime | None = None) -> str:
    moment = (created_at or datetime.now(UTC)).astimezone(UTC)
    # The suffix starts with the millisecond (3 hex digits), so names sort by creation time even
    # for versions written within one second; 3 random hex digits follow.
    millisecond = f"{moment.microsecond // 1000:03x}"
    return f"{moment:%Y%m%dT%H%M%SZ}-{millisecond}{secrets.token_hex(2)[:3]}"


def save_version(
    model_dir: Path | str,
    index: EmbeddingIndex,
    manifest_extra: Mapping[str, Any] | None = None,
) -> str:
    """Write `index` as a new complete version and return its name. Does not activate it."""
    versions = Path(model_dir) / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    created_at = datetime.now(UTC)
    version = new_version_name(created_at)
    staging = versions / f"{STAGING_PREFIX}{version}"
    staging.mkdir()
    try:
        with (staging / ARRAYS_FILE).open("wb") as out:
            np.savez(out, **{name: getattr(index, name) for name in ARRAY_FIELDS})
            _sync(out)
        _write_json(staging / MAPPINGS_FILE, index.name_lists())
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model_version": version,
            "created_at": created_at.isoformat(),
            "parameters": dict(index.params),
            "feature_config": index.feature_config.to_dict(),
            "data_window": index.training.get("data_window"),
            "reference_time": index.training.get("reference_time"),
            "counts": index.training.get("counts", {}),
            "metrics": dict(index.metrics),
            "shape": {"users": index.n_users, "items": index.n_items, "dim": index.dim},
            "files": {
                name: {"sha256": _sha256(staging / name), "bytes": (staging / name).stat().st_size}
                for name in (ARRAYS_FILE, MAPPINGS_FILE)
            },
        }
        for key, value in (manifest_extra or {}).items():
            if key in _RESERVED_KEYS:
                raise ValueError(f"manifest key {key!r} is reserved")
            manifest[key] = value
        _write_json(staging / MANIFEST_FILE, manifest, indent=True)
        _sync_dir(staging)
        staging.rename(versions / version)
        _sync_dir(versions)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


def read_manifest(model_dir: Path | str, version: str) -> dict[str, Any]:
    """The manifest of a version (not verified against the files: see `verify_version`)."""
    path = _version_dir(model_dir, version) / MANIFEST_FILE
    try:
        manifest = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"version {version} has no {MANIFEST_FILE}") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ArtifactError(f"version {version}: unreadable {MANIFEST_FILE} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"version {version}: not a format-{FORMAT_VERSION} manifest")
    if manifest.get("model_version") != version:
        raise ArtifactError(f"version {version}: manifest names {manifest.get('model_version')!r}")
    return manifest


def verify_version(model_dir: Path | str, version: str) -> dict[str, Any]:
    """The manifest, after checking every file it lists against its size and sha256."""
    manifest = read_manifest(model_dir, version)
    directory = _version_dir(model_dir, version)
    files = manifest.get("files")
    if not isinstance(files, dict) or not {ARRAYS_FILE, MAPPINGS_FILE} <= files.keys():
        raise ArtifactError(f"version {version}: the manifest does not list every file")
    for name, expected in files.items():
        if not isinstance(expected, dict) or "/" in name or name.startswith("."):
            raise ArtifactError(f"version {version}: malformed manifest entry for {name!r}")
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"version {version}: {name} is missing")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise ArtifactError(
                f"version {version}: {name} has {size} bytes, the manifest says {expected.get('bytes')}"
                " (truncated or replaced)"
            )
        if _sha256(path) != expected.get("sha256"):
            raise ArtifactError(f"version {version}: {name} fails its sha256 checksum")
    return manifest


def load_version(model_dir: Path | str, version: str) -> EmbeddingIndex:
    """The verified index of a version; raises ArtifactError for anything untrustworthy."""
    manifest = verify_version(model_dir, version)
    directory = _version_dir(model_dir, version)
    try:
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as stored:
            # Versions written before the feature rows were kept load without them: their
            # scores split no finer than whole vectors (index/explain.py).
            arrays = {
                name: stored[name]
                for name in ARRAY_FIELDS
                if name in stored.files or name not in FEATURE_ROW_FIELDS
            }
        mappings = orjson.loads((directory / MAPPINGS_FILE).read_bytes())
        return EmbeddingIndex.from_lists(
            arrays,
            mappings,
            feature_config=FeatureConfig.from_dict(manifest.get("feature_config") or {}),
            params=manifest.get("parameters") or {},
            metrics=manifest.get("metrics") or {},
            training={
                "data_window": manifest.get("data_window"),
                "reference_time": manifest.get("reference_time"),
                "counts": manifest.get("counts") or {},
            },
            version=version,
        )
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"version {version}: unusable contents ({exc!r})") from None


def activate(model_dir: Path | str, version: str) -> None:
    """Point CURRENT at a verified version, atomically (readers see the old or the new name)."""
    verify_version(model_dir, version)
    model_dir = Path(model_dir)
    pending = model_dir / f".{CURRENT_FILE}.{secrets.token_hex(4)}"
    try:
        with pending.open("w", encoding="ascii") as out:
            out.write(version + "\n")
            _sync(out)
        os.replace(pending, model_dir / CURRENT_FILE)
    finally:
        pending.unlink(missing_ok=True)
    _sync_dir(model_dir)


def current_version(model_dir: Path | str) -> str | None:
    """The active version's name, or None before any activation."""
    try:
        version = (Path(model_dir) / CURRENT_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"unreadable {CURRENT_FILE} ({exc})") from None
    if not VERSION_RE.match(version):
        raise ArtifactError(f"{CURRENT_FILE} does not hold a version name: {version[:80]!r}")
    return version


def load_current(model_dir: Path | str) -> EmbeddingIndex | None:
    version = current_version(model_dir)
    return None if version is None else load_version(model_dir, version)


def list_versions(model_dir: Path | str) -> list[str]:
    """Complete version directories, oldest first (staging directories are not versions)."""
    versions = Path(model_dir) / VERSIONS_DIR
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if p.is_dir() and VERSION_RE.match(p.name))


def prune(model_dir: Path | str, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions (never the active one) and dead staging
    directories. Returns the names removed."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    versions_dir = Path(model_dir) / VERSIONS_DIR
    active = current_version(model_dir)
    versions = list_versions(model_dir)
    removed = [v for v in versions[: max(len(versions) - keep, 0)] if v != active]
    for version in removed:
        shutil.rmtree(versions_dir / version, ignore_errors=True)
    if versions_dir.is_dir():
        cutoff = time.time() - STALE_STAGING_SECONDS
        for path in versions_dir.glob(f"{STAGING_PREFIX}*"):
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


def _version_dir(model_dir: Path | str, version: str) -> Path:
    # The name also arrives from CURRENT or an admin: never let it walk out of versions/.
    if not VERSION_RE.match(version):
        raise ArtifactError(f"not a version name: {version[:80]!r}")
    return Path(model_dir) / VERSIONS_DIR / version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value: Any, *, indent: bool = False) -> None:
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    with path.open("wb") as out:
        out.write(orjson.dumps(value, option=option))
        _sync(out)


def _sync(stream: Any) -> None:
    stream.flush()
    os.fsync(stream.fileno())


def _sync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
