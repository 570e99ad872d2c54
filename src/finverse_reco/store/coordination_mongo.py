"""The training lease and refresh jobs in MongoDB (see store/coordination.py).

training_lease   {_id: "training", holder, token, expires_at}: taken by one conditional
                 find_one_and_update (expired → ours, token + 1), or by the insert that
                 creates it; a duplicate key there means another process won
refresh_jobs     {_id: job_id, ...the job record}
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from finverse_reco.store.base import StoreUnavailable
from finverse_reco.store.coordination import FINISHED_JOBS_KEPT, LEASE_NAME, Lease
from finverse_reco.store.mongo_connection import MongoConnection


class MongoCoordination(MongoConnection):
    what = "the coordination store"

    async def acquire_lease(self, holder: str, ttl_seconds: float) -> Lease | None:
        now = time.time()
        try:
            taken = await self._db.training_lease.find_one_and_update(
                {"_id": LEASE_NAME, "expires_at": {"$lte": now}},
                {"$set": {"holder": holder, "expires_at": now + ttl_seconds}, "$inc": {"token": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if taken is not None:
                return Lease(holder, int(taken["token"]), float(taken["expires_at"]))
            if await self._db.training_lease.find_one({"_id": LEASE_NAME}, {"_id": 1}):
                return None  # held, and not expired
            lease = Lease(holder, 1, now + ttl_seconds)
            await self._db.training_lease.insert_one(
                {"_id": LEASE_NAME, "holder": holder, "token": 1, "expires_at": lease.expires_at}
            )
            return lease
        except DuplicateKeyError:
            return None  # another process created it first
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc

    async def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        now = time.time()
        try:
            renewed = await self._db.training_lease.find_one_and_update(
                {
                    "_id": LEASE_NAME,
                    "token": lease.token,
                    "holder": lease.holder,
                    "expires_at": {"$gt": now},
                },
                {"$set": {"expires_at": now + ttl_seconds}},
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc
        return None if renewed is None else Lease(lease.holder, lease.token, now + ttl_seconds)

    async def release_lease(self, lease: Lease) -> None:
        try:
            await self._db.training_lease.update_one(
                {"_id": LEASE_NAME, "token": lease.token}, {"$set": {"expires_at": 0.0}}
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc

    async def save_job(self, job: dict[str, Any]) -> None:
        try:
            await self._db.refresh_jobs.replace_one(
                {"_id": job["job_id"]}, {**job, "_id": job["job_id"]}, upsert=True
            )
            finished = {"state": {"$ne": "running"}}
            old = self._db.refresh_jobs.find(finished, {"_id": 1}).sort("started_at", DESCENDING)
            stale = [doc["_id"] async for doc in old.skip(FINISHED_JOBS_KEPT)]
            if stale:
                await self._db.refresh_jobs.delete_many({"_id": {"$in": stale}})
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc

    async def job(self, job_id: str) -> dict[str, Any] | None:
        try:
            document = await self._db.refresh_jobs.find_one({"_id": job_id})
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc
        if document is None:
            return None
        document.pop("_id")
        return document

    async def update_job_progress(self, job_id: str, done: int, total: int) -> None:
        try:
            await self._db.refresh_jobs.update_one(
                {"_id": job_id},
                {"$set": {"progress": {"epochs_done": done, "epochs_total": total}}},
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"coordination store: {exc}") from exc
