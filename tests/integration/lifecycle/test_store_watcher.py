"""A replica with FINVERSE_ARTIFACTS=store and an empty model directory: it downloads the store's
active version, verifies it and swaps it in; a version corrupted in the store is refused (the old
one keeps serving) and not fetched again until the store's active version changes; the cache keeps
only the newest versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from clustered_index import clustered_index  # tests/support

from finverse_reco.model.artifacts import ARRAYS_FILE, VERSIONS_DIR, list_versions, save_version
from finverse_reco.service.models import CACHED_VERSIONS_KEPT, ModelHolder, ModelWatcher
from finverse_reco.store.artifacts_sqlite import SQLiteArtifactStore


@pytest.fixture
async def store(tmp_path: Path) -> SQLiteArtifactStore:
    artifacts = SQLiteArtifactStore(tmp_path / "store.db")
    await artifacts.open()
    return artifacts


async def publish(store: SQLiteArtifactStore, trainer_dir: Path, seed: int) -> str:
    version = save_version(trainer_dir, clustered_index(seed))
    await store.put_version(version, trainer_dir / VERSIONS_DIR / version)
    await store.activate(version)
    return version


def corrupt_in_store(store: SQLiteArtifactStore, version: str) -> None:
    with sqlite3.connect(store.path) as db:
        db.execute(
            "UPDATE artifact_chunks SET data = zeroblob(length(data)) "
            "WHERE version = ? AND name = ? AND seq = 0",
            (version, ARRAYS_FILE),
        )


async def test_a_replica_follows_the_store_and_refuses_a_corrupt_copy(store, tmp_path, monkeypatch):
    trainer_dir, cache = tmp_path / "trainer", tmp_path / "replica-cache"
    holder = ModelHolder()
    watcher = ModelWatcher(holder, cache, poll_seconds=0.1, remote=store)
    assert not await watcher.check_once() and holder.version is None  # nothing active yet

    first = await publish(store, trainer_dir, 1)
    assert await watcher.check_once() and holder.version == first
    assert list_versions(cache) == [first], "downloaded into the empty cache"

    fetches = []
    original_fetch = store.fetch_version

    async def counting_fetch(version, into):
        fetches.append(version)
        await original_fetch(version, into)

    monkeypatch.setattr(store, "fetch_version", counting_fetch)
    broken = await publish(store, trainer_dir, 2)
    corrupt_in_store(store, broken)
    for _ in range(3):
        assert not await watcher.check_once()
    assert holder.version == first, "the old version keeps serving"
    assert "sha256" in holder.last_refusal
    assert fetches == [broken], "a refused version is not downloaded again on every poll"
    assert broken not in list_versions(cache), "the bad copy is deleted"

    newer = []
    for seed in (3, 4, 5):
        newer.append(await publish(store, trainer_dir, seed))
        assert await watcher.check_once() and holder.version == newer[-1]
    assert holder.last_refusal is None
    assert list_versions(cache) == newer[-CACHED_VERSIONS_KEPT:], "the cache keeps the newest"
