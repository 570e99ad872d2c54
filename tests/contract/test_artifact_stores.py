"""The artifact store contract, against the model directory, SQLite's blob table and MongoDB GridFS
(the stand-in): the same promises from each (store/artifacts.py)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from clustered_index import clustered_index  # tests/support
from gridfs import GridFSBucket
from mongo_stand_in import STORE_OPTIONS
from pymongo import MongoClient

from finverse_reco.model.artifacts import (
    ARRAYS_FILE,
    MANIFEST_FILE,
    MAPPINGS_FILE,
    VERSIONS_DIR,
    ArtifactError,
    load_version,
    save_version,
)
from finverse_reco.store.artifacts import (
    ArtifactStore,
    DirectoryArtifactStore,
    FencedOut,
    prune_versions,
)
from finverse_reco.store.artifacts_mongo import BUCKET, MongoArtifactStore
from finverse_reco.store.artifacts_sqlite import SQLiteArtifactStore


@pytest.fixture(params=["dir", "sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def place(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the store of this kind keeps things: a directory, a file, a database URL."""
    if kind == "dir":
        return str(tmp_path / "store-dir")
    if kind == "sqlite":
        return str(tmp_path / "store.db")
    return f"{request.getfixturevalue('mongo_url')}/finverse_artifacts_{uuid.uuid4().hex[:12]}"


def build(kind: str, place: str) -> ArtifactStore:
    if kind == "dir":
        return DirectoryArtifactStore(Path(place))
    if kind == "sqlite":
        return SQLiteArtifactStore(place)
    return MongoArtifactStore.from_url(place, **STORE_OPTIONS)


@pytest.fixture
async def store(kind: str, place: str):
    opened = build(kind, place)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A trainer's local model directory, where versions are written before they are stored."""
    return tmp_path / "trainer-cache"


def new_version(workdir: Path, seed: int = 0) -> tuple[str, Path]:
    version = save_version(workdir, clustered_index(seed), {"note": f"seed {seed}"})
    return version, workdir / VERSIONS_DIR / version


def tamper_stored_file(kind: str, place: str, version: str, name: str) -> None:
    """Flip one byte of a stored file, behind the store's back (disk rot, a bad copy)."""
    if kind == "dir":
        path = Path(place) / VERSIONS_DIR / version / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "sqlite":
        with sqlite3.connect(place) as db:
            (data,) = db.execute(
                "SELECT data FROM artifact_chunks WHERE version = ? AND name = ? AND seq = 0",
                (version, name),
            ).fetchone()
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            db.execute(
                "UPDATE artifact_chunks SET data = ? WHERE version = ? AND name = ? AND seq = 0",
                (bytes(data), version, name),
            )
    else:
        # Through GridFS's own API (the stand-in keeps GridFS chunks where plain queries on
        # `<bucket>.chunks` do not reach): the stored file replaced by a damaged copy.
        with MongoClient(place, serverSelectionTimeoutMS=5000) as client:
            bucket = GridFSBucket(client.get_default_database(), bucket_name=BUCKET)
            (stored,) = bucket.find({"metadata.version": version, "metadata.name": name})
            data = bytearray(bucket.open_download_stream(stored._id).read())
            data[len(data) // 2] ^= 0xFF
            bucket.delete(stored._id)
            bucket.upload_from_stream(f"{version}/{name}", bytes(data), metadata=stored.metadata)


async def test_a_stored_version_comes_back_byte_for_byte_and_loads(store, workdir, tmp_path):
    version, source = new_version(workdir)
    await store.put_version(version, source)
    assert await store.list_versions() == [version]
    assert (await store.manifest(version))["model_version"] == version
    cache = tmp_path / "replica-cache"
    await store.fetch_version(version, cache / VERSIONS_DIR / version)
    for name in (ARRAYS_FILE, MAPPINGS_FILE, MANIFEST_FILE):
        assert (cache / VERSIONS_DIR / version / name).read_bytes() == (source / name).read_bytes()
    assert load_version(cache, version).n_users == 30  # verified checksums, then loaded


async def test_versions_are_immutable_and_listed_oldest_first(store, workdir):
    first, first_dir = new_version(workdir, 1)
    second, second_dir = new_version(workdir, 2)
    await store.put_version(second, second_dir)
    await store.put_version(first, first_dir)
    assert await store.list_versions() == sorted([first, second])
    with pytest.raises(ArtifactError, match="already stored"):
        await store.put_version(first, first_dir)


async def test_activation_switches_the_pointer_only_to_a_complete_version(store, workdir):
    assert await store.current() is None
    version, source = new_version(workdir)
    with pytest.raises(ArtifactError, match="no model version"):
        await store.activate(version)
    await store.put_version(version, source)
    await store.activate(version)
    assert await store.current() == version


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
async def test_a_corrupt_upload_is_refused_and_never_activated(store, workdir, damage):
    version, source = new_version(workdir)
    arrays = source / ARRAYS_FILE
    data = arrays.read_bytes()
    if damage == "flip a byte":
        arrays.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        arrays.write_bytes(data[: len(data) // 2])
    else:
        arrays.unlink()
    with pytest.raises(ArtifactError):
        await store.put_version(version, source)
    assert await store.list_versions() == []
    with pytest.raises(ArtifactError):
        await store.activate(version)
    assert await store.current() is None


async def test_an_upload_cut_off_before_its_commit_leaves_no_version(
    store, workdir, monkeypatch, tmp_path
):
    """The process dies between storing the files and the write that makes them a version: no
    cleanup runs either. Nothing is listed or activatable, and the name can be stored again."""
    version, source = new_version(workdir)

    class CutOff(Exception):
        pass

    def cut_off(*_: object) -> None:
        raise CutOff

    monkeypatch.setattr(store, "_commit", cut_off)
    monkeypatch.setattr(store, "_discard", cut_off, raising=False)
    with pytest.raises(CutOff):
        await store.put_version(version, source)
    monkeypatch.undo()
    assert await store.list_versions() == []
    with pytest.raises(ArtifactError):
        await store.activate(version)
    await store.put_version(version, source)
    assert await store.list_versions() == [version]
    await store.fetch_version(version, tmp_path / "copy" / VERSIONS_DIR / version)
    assert load_version(tmp_path / "copy", version).n_users == 30


async def test_a_file_corrupted_in_the_store_fails_verification_of_the_fetched_copy(
    kind, place, store, workdir, tmp_path
):
    version, source = new_version(workdir)
    await store.put_version(version, source)
    tamper_stored_file(kind, place, version, ARRAYS_FILE)
    cache = tmp_path / "replica-cache"
    await store.fetch_version(version, cache / VERSIONS_DIR / version)
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(cache, version)


async def test_a_fenced_activation_is_refused_once_a_newer_lease_raised_the_fence(store, workdir):
    old, old_dir = new_version(workdir, 1)
    new, new_dir = new_version(workdir, 2)
    await store.put_version(old, old_dir)
    await store.put_version(new, new_dir)
    await store.raise_fence(7)
    with pytest.raises(FencedOut):
        await store.activate(new, fence=6)  # the trainer whose lease expired and was taken over
    assert await store.current() is None
    await store.activate(old, fence=7)
    await store.raise_fence(5)  # never lowered
    with pytest.raises(FencedOut):
        await store.activate(new, fence=6)
    await store.activate(new)  # an operator's rollback is not fenced
    assert await store.current() == new


async def test_pruning_keeps_the_newest_and_the_active_one(store, workdir):
    versions = []
    for seed in range(4):
        version, source = new_version(workdir, seed)
        await store.put_version(version, source)
        versions.append(version)
    await store.activate(versions[0])
    removed = await prune_versions(store, keep=2)
    assert removed == [versions[1]]
    assert await store.list_versions() == [versions[0], *versions[2:]]
    with pytest.raises(ArtifactError):
        await store.delete_version(versions[0])  # active


async def test_every_kind_meets_the_protocol(store):
    assert isinstance(store, ArtifactStore)
