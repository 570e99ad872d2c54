"""Model versions in MongoDB (FINVERSE_ARTIFACTS=store with a mongodb:// URL): files in GridFS,
one document per complete version, and the active version with its fence in one document.

    model_artifacts.files / .chunks   GridFS, filename "<version>/<name>", metadata {version, name}
    model_versions                    {_id: version, manifest}: written after every file is stored
    model_pointer                     {_id: "active", version, fence}

A version exists once its `model_versions` document does; files of an upload that failed are
deleted, and if even that failed they are never read (fetches go by the manifest of a complete
version) and a new upload of the name deletes them first. Activation is one conditional update on
`model_pointer` (fence ≤ token), so a stale trainer's activation matches nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from gridfs import AsyncGridFSBucket
from pymongo.errors import DuplicateKeyError, PyMongoError

from finverse_reco.model.artifacts import MANIFEST_FILE, ArtifactError
from finverse_reco.store.artifacts import ChecksumReader, FencedOut, checked_files, read_chunks
from finverse_reco.store.base import StoreUnavailable
from finverse_reco.store.mongo_connection import MongoConnection

BUCKET = "model_artifacts"
POINTER = "active"


class MongoArtifactStore(MongoConnection):
    what = "the artifact store"

    def _bucket(self) -> AsyncGridFSBucket:
        return AsyncGridFSBucket(self._db, bucket_name=BUCKET)

    async def put_version(self, version: str, source: Path) -> None:
        manifest, files = checked_files(version, Path(source))
        try:
            if await self._db.model_versions.find_one({"_id": version}, {"_id": 1}):
                raise ArtifactError(f"version {version} is already stored (versions are immutable)")
            await self._discard(version)  # what a cut-off upload of this name left behind
            bucket = self._bucket()
            try:
                for name, path in files:
                    reader = ChecksumReader(version, name, path, manifest["files"].get(name))
                    stream = bucket.open_upload_stream(
                        f"{version}/{name}", metadata={"version": version, "name": name}
                    )
                    try:
                        async for chunk in read_chunks(reader):
                            await stream.write(chunk)
                    except BaseException:
                        # Its chunks, written before the files document (which never came).
                        await self._db[f"{BUCKET}.chunks"].delete_many({"files_id": stream._id})
                        raise
                    await stream.close()
                await self._commit(version, manifest)
            except BaseException:
                await self._discard(version)
                raise
        except PyMongoError as exc:
            raise StoreUnavailable(f"artifact store: {exc}") from exc

    async def _commit(self, version: str, manifest: dict[str, Any]) -> None:
        """The one write that makes a stored version visible."""
        try:
            await self._db.model_versions.insert_one({"_id": version, "manifest": manifest})
        except DuplicateKeyError:
            raise ArtifactError(f"version {version} is already stored") from None

    async def _discard(self, version: str) -> None:
        bucket = self._bucket()
        async for stored in bucket.find({"metadata.version": version}):
            await bucket.delete(stored._id)

    async def list_versions(self) -> list[str]:
        with _driver_errors():
            return sorted(
                [doc["_id"] async for doc in self._db.model_versions.find({}, {"_id": 1})]
            )

    async def manifest(self, version: str) -> dict[str, Any]:
        with _driver_errors():
            document = await self._db.model_versions.find_one({"_id": version})
        if document is None:
            raise ArtifactError(f"no model version {version}")
        return document["manifest"]

    async def fetch_version(self, version: str, into: Path) -> None:
        manifest = await self.manifest(version)
        await asyncio.to_thread(into.mkdir, parents=True)
        bucket = self._bucket()
        with _driver_errors():
            for name in [*manifest["files"], MANIFEST_FILE]:
                stored = await bucket.find(
                    {"metadata.version": version, "metadata.name": name}
                ).to_list(1)
                if not stored:
                    raise ArtifactError(f"version {version}: {name} is missing from the store")
                download = await bucket.open_download_stream(stored[0]._id)
                with (into / name).open("wb") as out:
                    while chunk := await download.readchunk():
                        out.write(chunk)

    async def current(self) -> str | None:
        with _driver_errors():
            pointer = await self._db.model_pointer.find_one({"_id": POINTER})
        return pointer.get("version") if pointer else None

    async def activate(self, version: str, fence: int | None = None) -> None:
        with _driver_errors():
            if not await self._db.model_versions.find_one({"_id": version}, {"_id": 1}):
                raise ArtifactError(f"no model version {version}")
            await self._ensure_pointer()
            condition: dict[str, Any] = {"_id": POINTER}
            if fence is not None:
                condition["fence"] = {"$lte": fence}
            result = await self._db.model_pointer.update_one(
                condition, {"$set": {"version": version}}
            )
            if result.matched_count == 0:
                pointer = await self._db.model_pointer.find_one({"_id": POINTER}) or {}
                raise FencedOut(
                    f"version {version} not activated: a newer training lease (token "
                    f"{pointer.get('fence')}) replaced this trainer's (token {fence})"
                )

    async def raise_fence(self, token: int) -> None:
        with _driver_errors():
            await self._ensure_pointer()
            await self._db.model_pointer.update_one({"_id": POINTER}, {"$max": {"fence": token}})

    async def delete_version(self, version: str) -> None:
        if version == await self.current():
            raise ArtifactError(f"version {version} is active; activate another first")
        with _driver_errors():
            await self._db.model_versions.delete_one({"_id": version})
            await self._discard(version)

    async def _ensure_pointer(self) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another process created it just now
            await self._db.model_pointer.update_one(
                {"_id": POINTER}, {"$setOnInsert": {"version": None, "fence": 0}}, upsert=True
            )


class _driver_errors:
    """Driver failures become StoreUnavailable (what callers already handle)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if kind is not None and issubclass(kind, PyMongoError):
            raise StoreUnavailable(f"artifact store: {exc}") from exc
