"""The production interaction store: MongoDB through PyMongo's native async client.

Documents are exactly `InteractionEvent.to_document()`, the seed's shape, with the `_id` MongoDB
assigns (an ObjectId, as in the seed). Idempotency comes from a unique index on `event_id` instead of
using it as `_id`: the document stays the seed's, ObjectIds grow with time (inserts append to the `_id`
index instead of landing at random places in it) and break timestamp ties in insertion order.

Every driver error becomes `StoreUnavailable` with a reason. The client reconnects by itself when the
server comes back. `timeout_ms` bounds finding and connecting to a server, so an outage shows up
within it; one round trip on an open connection may take `operation_timeout_ms`, because a batch
insert or an aggregation over a wide window can legitimately take longer than a ping. A server that
dies closes its sockets, which fails operations in flight at once rather than at that timeout.
The operations used are listed in docs/STORES.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConfigurationError, PyMongoError

from finverse_reco.events import InteractionEvent
from finverse_reco.store.base import InsertResult, StoreUnavailable

DEFAULT_DATABASE = "finverse_interactions"
DEFAULT_COLLECTION = "interactions"
DUPLICATE_KEY = 11000
MAX_REASON_CHARS = 300
DEFAULT_TIMEOUT_MS = 2000
DEFAULT_OPERATION_TIMEOUT_MS = 30_000
DEFAULT_POOL_SIZE = 50

# The seed's indexes, with two of them compound: `user_id` and `session_id` lead, so they serve every
# query a single-field index would, and the timestamp behind them answers "most recent N" from the
# index without an in-memory sort.
INDEXES = [
    IndexModel([("event_id", ASCENDING)], unique=True, name="event_id_unique"),
    IndexModel([("user_id", ASCENDING), ("timestamp", DESCENDING)], name="user_id_timestamp"),
    IndexModel([("session_id", ASCENDING), ("timestamp", DESCENDING)], name="session_id_timestamp"),
    IndexModel([("timestamp", ASCENDING)], name="timestamp"),
    IndexModel([("type", ASCENDING)], name="type"),
    IndexModel([("data.productId", ASCENDING)], name="data_productId"),
]
NEWEST_FIRST = [("timestamp", DESCENDING), ("_id", DESCENDING)]
WITHOUT_ID = {"_id": 0}


class MongoInteractionStore:
    """`InteractionStore` on MongoDB (`mongodb://host:port/database`; database defaults to the seed's)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        operation_timeout_ms: int = DEFAULT_OPERATION_TIMEOUT_MS,
        pool_size: int = DEFAULT_POOL_SIZE,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        if min(timeout_ms, operation_timeout_ms, pool_size) < 1:
            raise ValueError("timeout_ms, operation_timeout_ms and pool_size must be at least 1")
        self.url = url
        self.timeout_ms = timeout_ms
        self.operation_timeout_ms = operation_timeout_ms
        self.pool_size = pool_size
        self.collection_name = collection
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._indexed = False
        self._index_lock = asyncio.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        operation_timeout_ms: int = DEFAULT_OPERATION_TIMEOUT_MS,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> MongoInteractionStore:
        if not url.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(
                f"a MongoDB store URL starts with mongodb:// or mongodb+srv://: {url!r}"
            )
        return cls(
            url,
            timeout_ms=timeout_ms,
            operation_timeout_ms=operation_timeout_ms,
            pool_size=pool_size,
        )

    def __repr__(self) -> str:
        return f"MongoInteractionStore({self._where!r})"

    @property
    def _where(self) -> str:
        """The URL without credentials, fit for logs and /ready."""
        return re.sub(r"//[^@/]*@", "//", self.url)

    # --- lifecycle

    async def open(self) -> None:
        """Create the client and the indexes.

        When the server is down this raises StoreUnavailable but keeps the client: every later call
        retries, and the first one that reaches the server creates the indexes before anything else.
        """
        if self._client is None:
            try:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    self.url,
                    serverSelectionTimeoutMS=self.timeout_ms,
                    connectTimeoutMS=self.timeout_ms,
                    socketTimeoutMS=self.operation_timeout_ms,
                    maxPoolSize=self.pool_size,
                    tz_aware=True,
                    tzinfo=UTC,
                    appname="finverse-reco",
                )
            except (ConfigurationError, ValueError) as exc:
                raise ValueError(f"invalid MongoDB URL {self._where!r}: {exc}") from None
            self._client = client
            database = client.get_default_database(default=DEFAULT_DATABASE)
            self._collection = database[self.collection_name]
        with self._driver_errors():
            await self._ready()

    async def close(self) -> None:
        client, self._client, self._collection = self._client, None, None
        self._indexed = False
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        with self._driver_errors():
            collection = await self._ready()
            await collection.database.command("ping")

    # --- writes

    async def insert_many(self, events: Sequence[InteractionEvent]) -> InsertResult:
        if not events:
            return InsertResult(inserted=0, duplicates=0)
        documents = [event.to_document() for event in events]
        with self._driver_errors():
            collection = await self._ready()
            try:
                result = await collection.insert_many(documents, ordered=False)
                inserted = len(result.inserted_ids)
            except BulkWriteError as exc:
                details = exc.details
                if details.get("writeConcernErrors") or any(
                    error.get("code") != DUPLICATE_KEY for error in details.get("writeErrors", ())
                ):
                    raise
                # ordered=False: every other document was written; a duplicate key is "already stored".
                inserted = int(details["nInserted"])
        return InsertResult(inserted=inserted, duplicates=len(events) - inserted)

    # --- reads

    async def user_interactions(self, user_id: str, limit: int = 200) -> list[InteractionEvent]:
        documents = await self._newest({"user_id": user_id}, limit)
        return [InteractionEvent.model_validate(document) for document in documents]

    async def session_interactions(
        self, session_id: str, limit: int = 200
    ) -> list[InteractionEvent]:
        documents = await self._newest({"session_id": session_id}, limit)
        return [InteractionEvent.model_validate(document) for document in reversed(documents)]

    async def count(self, since: datetime | None = None) -> int:
        with self._driver_errors():
            collection = await self._ready()
            return await collection.count_documents(time_window(since, None))

    async def scan(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        with self._driver_errors():
            collection = await self._ready()
            cursor = collection.find(time_window(since, until), WITHOUT_ID, batch_size=batch_size)
            try:
                while batch := await cursor.to_list(batch_size):
                    yield batch
            finally:
                await cursor.close()

    # --- plumbing

    async def _newest(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        require_positive_limit(limit)
        with self._driver_errors():
            collection = await self._ready()
            cursor = collection.find(query, WITHOUT_ID).sort(NEWEST_FIRST).limit(limit)
            return await cursor.to_list()

    async def _ready(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise StoreUnavailable(f"{self!r} is not open")
        if not self._indexed:
            async with self._index_lock:
                if not self._indexed:
                    await self._collection.create_indexes(INDEXES)
                    self._indexed = True
        return self._collection

    @contextmanager
    def _driver_errors(self) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            raise StoreUnavailable(f"MongoDB at {self._where}: {reason}") from exc


def time_window(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    bounds = {}
    if since is not None:
        bounds["$gte"] = since
    if until is not None:
        bounds["$lt"] = until
    return {"timestamp": bounds} if bounds else {}


def require_positive_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
