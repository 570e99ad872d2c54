"""The production interaction store: MongoDB through PyMongo's native async client.

Documents are exactly `InteractionEvent.to_document()`, the seed's shape, with the `_id` MongoDB
assigns (an ObjectId, as in the seed). Idempotency comes from a unique index on `event_id` instead of
using it as `_id`: the document stays the seed's, ObjectIds grow with time (inserts append to the `_id`
index instead of landing at random places in it) and break timestamp ties in insertion order.

The store never builds an index: `finverse-reco migrate` does (store/migrate.py), from the
declarations below. Before its first write the store checks, once, that the unique `event_id` index
is there: without it a redelivered event would be stored twice, so it answers StoreUnavailable
("run migrate") instead of writing.

Errors: a write error that concerns one document and would recur (a schema validator, a document too
large, another unique index) refuses that event (`EventsRefused`) while the rest are stored; every
other driver error becomes `StoreUnavailable` with a reason, and the client reconnects by itself
when the server comes back. Client options and their precedence: store/mongo_options.py. The
operations used are listed in docs/STORES.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from finverse_reco.audit import AuditRecord
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import FeedbackEvent, InteractionColumns, InteractionEvent
from finverse_reco.store.base import (
    SCAN_FIELDS,
    EventsRefused,
    InsertResult,
    RefusedEvent,
    StoreUnavailable,
)
from finverse_reco.store.mongo_options import MongoOptions, new_client, redact
from finverse_reco.store.schema import CollectionIndexes, IndexSpec, satisfied_by

DEFAULT_DATABASE = "finverse_interactions"
DEFAULT_COLLECTION = "interactions"
AUDIT_COLLECTION = "audit_records"
# `_id` = the tombstone (a keyed hash of an erased customer's id): unique without another index.
TOMBSTONES_COLLECTION = "erasure_tombstones"
PROFILES_COLLECTION = "customer_profiles"
DUPLICATE_KEY = 11000
MAX_REASON_CHARS = 300

# Unique among string ids only: a seeded document without `event_id` stays out of the index instead
# of colliding on `event_id: null`. Every event this service writes has a string id.
EVENT_ID_UNIQUE = IndexSpec(
    (("event_id", 1),),
    unique=True,
    partial_filter={"event_id": {"$type": "string"}},
    why="idempotent ingestion (string ids only: seed documents without one are left out)",
)
# All keys ascending: MongoDB walks an index backwards for the inverse sort, so one index answers
# "newest first" (timestamp desc, _id desc) after the equality on the first key, without an
# in-memory sort; `_id` last breaks timestamp ties in insertion order.
INTERACTIONS = CollectionIndexes(
    DEFAULT_COLLECTION,
    (
        EVENT_ID_UNIQUE,
        IndexSpec(
            (("user_id", 1), ("timestamp", 1), ("_id", 1)),
            why="a customer's latest N: user_interactions",
        ),
        IndexSpec(
            (("session_id", 1), ("timestamp", 1), ("_id", 1)),
            why="a session's latest N: session_interactions",
        ),
        IndexSpec((("timestamp", 1),), why="time windows: the training scan, counts"),
        IndexSpec((("type", 1),), why="the seed's"),
        IndexSpec((("data.productId", 1),), why="the seed's"),
    ),
)
# Append-only, `_id` = the recommendation id (unique without another index, so a batch written
# again stores nothing twice).
AUDIT_RECORDS = CollectionIndexes(
    AUDIT_COLLECTION,
    (
        IndexSpec((("user_id", 1), ("served_at", 1)), why="a customer's records: customer_audit"),
        IndexSpec((("served_at", 1),), why="the retention purge"),
    ),
)
# One document per customer: `put_profile` upserts on the customer id, and without this index two
# racing upserts could store two.
PROFILE_ID_UNIQUE = IndexSpec(
    (("user_id", 1),), unique=True, why="one profile per customer: put_profile's upsert"
)
CUSTOMER_PROFILES = CollectionIndexes(PROFILES_COLLECTION, (PROFILE_ID_UNIQUE,))
NEWEST_FIRST = [("timestamp", DESCENDING), ("_id", DESCENDING)]
WITHOUT_ID = {"_id": 0}
# Only what training reads: top-level fields, so a secondary sends less and no nested projection
# is needed.
SCAN_PROJECTION = {"_id": 0, **dict.fromkeys(SCAN_FIELDS, 1)}
# What `FeedbackEvent` reads: no nested projection (the whole `data`, a few hundred bytes).
FEEDBACK_PROJECTION = {
    "_id": 0,
    **dict.fromkeys(("event_id", "user_id", "type", "timestamp", "recommendation_id", "data"), 1),
}
# Per-document write errors that describe the server's state, not the document (MongoDB's error
# categories NotPrimaryError, RetriableError, ShutdownError, InterruptionError,
# ExceededTimeLimitError, StaleShardVersionError; write conflicts; lock timeouts): the batch is
# retried. Any other per-document error is the document's own and refuses that event.
TRANSIENT_WRITE_ERRORS = {
    6: "HostUnreachable",
    7: "HostNotFound",
    24: "LockTimeout",
    46: "LockBusy",
    50: "MaxTimeMSExpired",
    63: "StaleShardVersion",
    89: "NetworkTimeout",
    91: "ShutdownInProgress",
    112: "WriteConflict",
    117: "ConflictingOperationInProgress",
    150: "StaleEpoch",
    189: "PrimarySteppedDown",
    202: "NetworkInterfaceExceededTimeLimit",
    262: "ExceededTimeLimit",
    9001: "SocketException",
    10107: "NotWritablePrimary",
    11600: "InterruptedAtShutdown",
    11601: "Interrupted",
    11602: "InterruptedDueToReplStateChange",
    13388: "StaleConfig",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}
# Names for the reasons of the usual refusals (a reason carries the code and message either way).
KNOWN_REFUSALS = {
    2: "BadValue",
    121: "DocumentValidationFailure",
    10334: "BSONObjectTooLarge",
    DUPLICATE_KEY: "DuplicateKey",
}


class MongoInteractionStore:
    """`InteractionStore` on MongoDB (`mongodb://host:port/database`; database defaults to the seed's)."""

    def __init__(
        self,
        url: str,
        *,
        options: MongoOptions | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self.url = url
        self.options = options or MongoOptions()
        self.collection_name = collection
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._audit: AsyncCollection[dict[str, Any]] | None = None
        self._tombstones: AsyncCollection[dict[str, Any]] | None = None
        self._profiles: AsyncCollection[dict[str, Any]] | None = None
        self._idempotent = False
        self._profiles_unique = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MongoInteractionStore:
        """`options` are `MongoOptions` fields: the defaults under the URL's own options."""
        if not url.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(
                f"a MongoDB store URL starts with mongodb:// or mongodb+srv://: {url!r}"
            )
        return cls(url, options=MongoOptions(**options))

    def __repr__(self) -> str:
        return f"MongoInteractionStore({self._where!r})"

    @property
    def _where(self) -> str:
        """The URL without credentials, fit for logs and /ready."""
        return redact(self.url)

    # --- lifecycle

    async def open(self) -> None:
        """Create the client and check that the server answers; creates no index.

        When the server is down this raises StoreUnavailable but keeps the client: every later call
        retries, and the driver reconnects by itself.
        """
        if self._client is None:
            client = new_client(self.url, self.options)
            self._client = client
            database = client.get_default_database(default=DEFAULT_DATABASE)
            self._collection = database[self.collection_name]
            self._audit = database[AUDIT_COLLECTION]
            self._tombstones = database[TOMBSTONES_COLLECTION]
            self._profiles = database[PROFILES_COLLECTION]
        await self.ping()

    async def close(self) -> None:
        client, self._client, self._collection = self._client, None, None
        self._audit = self._tombstones = self._profiles = None
        self._idempotent = self._profiles_unique = False
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        with self._driver_errors():
            await self._ready().database.command("ping")

    # --- writes

    async def insert_many(self, events: Sequence[InteractionEvent]) -> InsertResult:
        if not events:
            return InsertResult(inserted=0, duplicates=0)
        documents = [event.to_document() for event in events]
        with self._driver_errors():
            collection = await self._writable()
            try:
                result = await collection.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                if exc.details.get("writeConcernErrors"):
                    raise  # written, but not known to be durable: retry (duplicates are harmless)
                return await self._sort_write_errors(collection, documents, exc.details)
        return InsertResult(inserted=len(result.inserted_ids), duplicates=0)

    async def _sort_write_errors(
        self,
        collection: AsyncCollection[dict[str, Any]],
        documents: list[dict[str, Any]],
        details: dict[str, Any],
    ) -> InsertResult:
        """ordered=False wrote every document without an error; sort out the others.

        A duplicate key error is a duplicate when an event with that id is stored (the first copy,
        in this batch or an earlier one); otherwise another unique index refused the event. Asking
        is one indexed query, made only for batches with duplicate key errors, and is right on any
        server version, also when a redelivered event collides on another unique index first.
        """
        errors = details.get("writeErrors", ())
        transient = [error for error in errors if error.get("code") in TRANSIENT_WRITE_ERRORS]
        if transient:
            raise StoreUnavailable(
                f"MongoDB at {self._where}: {len(transient)} write(s) failed transiently, e.g. "
                f"{describe(transient[0])}"
            )
        duplicate_ids = [
            documents[error["index"]]["event_id"]
            for error in errors
            if error.get("code") == DUPLICATE_KEY
        ]
        stored = await self._stored_event_ids(collection, duplicate_ids) if duplicate_ids else set()
        duplicates = 0
        refused = []
        for error in errors:
            event_id = documents[error["index"]]["event_id"]
            if error.get("code") == DUPLICATE_KEY and event_id in stored:
                duplicates += 1
            else:
                refused.append(RefusedEvent(error["index"], event_id, describe(error)))
        result = InsertResult(inserted=int(details["nInserted"]), duplicates=duplicates)
        if refused:
            raise EventsRefused(result, refused)
        return result

    @staticmethod
    async def _stored_event_ids(
        collection: AsyncCollection[dict[str, Any]], event_ids: list[str]
    ) -> set[str]:
        # `$type: string` repeats the partial index's filter, so the planner may use that index.
        query = {"event_id": {"$in": event_ids, "$type": "string"}}
        cursor = collection.find(query, {"_id": 0, "event_id": 1})
        return {document["event_id"] for document in await cursor.to_list()}

    # --- reads

    async def user_interactions(self, user_id: str, limit: int = 200) -> list[InteractionEvent]:
        documents = await self._newest({"user_id": user_id}, limit)
        return [InteractionEvent.model_validate(document) for document in documents]

    async def session_interactions(
        self, session_id: str, limit: int = 200
    ) -> list[InteractionEvent]:
        documents = await self._newest({"session_id": session_id}, limit)
        return [InteractionEvent.model_validate(document) for document in reversed(documents)]

    async def events_of_types(
        self, types: Collection[str], since: datetime, until: datetime | None = None
    ) -> list[FeedbackEvent]:
        kinds = sorted(set(types))
        if not kinds:
            return []
        query = {"type": {"$in": kinds}, **time_window(since, until)}
        with self._driver_errors():
            cursor = self._ready().find(query, FEEDBACK_PROJECTION).sort(NEWEST_FIRST)
            return feedback_events(await cursor.to_list())

    async def customers_events_of_types(
        self,
        user_ids: Collection[str],
        since: Mapping[str, datetime],
        limit: int,
    ) -> dict[str, list[FeedbackEvent]]:
        require_positive_limit(limit)
        customers = sorted(set(user_ids))
        if not since or not customers:
            return {}
        # One find for every customer of the batch (the user_id, timestamp index answers each,
        # from the earliest window); each type only within its own window (types that share a
        # window share a clause). The cap per customer and type is applied here, as no standard
        # find can cap per group.
        by_start: dict[datetime, list[str]] = {}
        for kind, start in sorted(since.items()):
            by_start.setdefault(start, []).append(kind)
        windows = [
            {"type": {"$in": kinds}, "timestamp": {"$gte": start}}
            for start, kinds in by_start.items()
        ]
        query = {
            "user_id": {"$in": customers},
            **time_window(min(by_start), None),
            **({"$or": windows} if len(windows) > 1 else windows[0]),
        }
        with self._driver_errors():
            cursor = self._ready().find(query, FEEDBACK_PROJECTION).sort(NEWEST_FIRST)
            events = feedback_events(await cursor.to_list())
        found: dict[str, list[FeedbackEvent]] = {}
        counted: dict[tuple[str, str], int] = {}
        for event in events:
            key = (event.user_id, event.type)
            if counted.get(key, 0) < limit:
                counted[key] = counted.get(key, 0) + 1
                found.setdefault(event.user_id, []).append(event)
        return found

    async def count(self, since: datetime | None = None) -> int:
        with self._driver_errors():
            collection = self._ready()
            return await collection.count_documents(time_window(since, None))

    async def scan(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> AsyncIterator[InteractionColumns]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        with self._driver_errors():
            window = time_window(since, until)
            cursor = self._ready().find(window, SCAN_PROJECTION, batch_size=batch_size)
            try:
                while batch := await cursor.to_list(batch_size):
                    yield InteractionColumns.from_documents(batch)
            finally:
                await cursor.close()

    # --- the audit trail

    async def append_audit(self, records: Sequence[AuditRecord]) -> int:
        if not records:
            return 0
        documents = [{"_id": r.recommendation_id, **r.to_document()} for r in records]
        with self._driver_errors():
            try:
                result = await self._audit_ready().insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", ())
                if exc.details.get("writeConcernErrors") or any(
                    error.get("code") != DUPLICATE_KEY for error in errors
                ):
                    raise  # not known to be stored: the trail writes the batch again
                return int(exc.details["nInserted"])
        return len(result.inserted_ids)

    async def audit_record(self, recommendation_id: str) -> AuditRecord | None:
        with self._driver_errors():
            document = await self._audit_ready().find_one({"_id": recommendation_id}, WITHOUT_ID)
        return None if document is None else AuditRecord.from_document(document)

    async def customer_audit(
        self, user_id: str, since: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        require_positive_limit(limit)
        query: dict[str, Any] = {"user_id": user_id}
        if since is not None:
            query["served_at"] = {"$gte": since}
        with self._driver_errors():
            cursor = self._audit_ready().find(query, WITHOUT_ID)
            documents = await cursor.sort("served_at", DESCENDING).limit(limit).to_list()
        return [AuditRecord.from_document(document) for document in documents]

    async def count_audit(self) -> int:
        with self._driver_errors():
            return await self._audit_ready().count_documents({})

    async def purge_audit(self, before: datetime) -> int:
        with self._driver_errors():
            result = await self._audit_ready().delete_many({"served_at": {"$lt": before}})
        return result.deleted_count

    # --- erasure

    async def add_tombstone(self, tombstone: str, erased_at: datetime) -> bool:
        with self._driver_errors():
            result = await self._tombstones_ready().update_one(
                {"_id": tombstone}, {"$setOnInsert": {"erased_at": erased_at}}, upsert=True
            )
        return result.upserted_id is not None

    async def tombstones(self) -> set[str]:
        with self._driver_errors():
            documents = await self._tombstones_ready().find({}, {"_id": 1}).to_list()
        return {document["_id"] for document in documents}

    async def erased_among(self, tombstones: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(tombstones))
        if not wanted:
            return set()
        with self._driver_errors():
            cursor = self._tombstones_ready().find({"_id": {"$in": wanted}}, {"_id": 1})
            return {document["_id"] for document in await cursor.to_list()}

    async def delete_customer(self, user_id: str) -> dict[str, int]:
        with self._driver_errors():
            interactions = await self._ready().delete_many({"user_id": user_id})
            audit = await self._audit_ready().delete_many({"user_id": user_id})
            profiles = await self._profiles_ready().delete_many({"user_id": user_id})
        return {
            "interactions": interactions.deleted_count,
            "audit_records": audit.deleted_count,
            "profiles": profiles.deleted_count,
        }

    async def user_activity(
        self, user_ids: Sequence[str], types: Sequence[str], since: datetime
    ) -> InteractionColumns:
        users, kinds = list(dict.fromkeys(user_ids)), list(dict.fromkeys(types))
        if not users or not kinds:
            return InteractionColumns.from_documents([])
        query = {"user_id": {"$in": users}, "type": {"$in": kinds}, "timestamp": {"$gte": since}}
        with self._driver_errors():
            documents = await self._ready().find(query, SCAN_PROJECTION).to_list()
        return InteractionColumns.from_documents(documents)

    async def put_profile(self, profile: CustomerProfile) -> bool:
        """An upsert of the whole document, filtered on an older `updated_at`: when the stored
        profile is newer the filter matches nothing, the upsert's insert hits the unique index,
        and nothing changes."""
        document = profile.to_document()
        newer_or_same = {"user_id": profile.user_id, "updated_at": {"$lte": profile.updated_at}}
        with self._driver_errors():
            profiles = await self._profiles_writable()
            try:
                if profile.personalisation_consent is None:
                    # Every field but the consent, which stays as stored (None on a first insert).
                    consent = document.pop("personalisation_consent")
                    await profiles.update_one(
                        newer_or_same,
                        {"$set": document, "$setOnInsert": {"personalisation_consent": consent}},
                        upsert=True,
                    )
                else:
                    await profiles.replace_one(newer_or_same, document, upsert=True)
            except DuplicateKeyError:
                return False
        return True

    async def put_consent(self, user_id: str, consent: bool, updated_at: datetime) -> bool:
        """As `put_profile`: an upsert filtered on an older `updated_at`, refused by the unique
        index when the stored profile is newer. The rest of a new profile is unknown."""
        changed = {"personalisation_consent": consent, "updated_at": updated_at}
        minimal = CustomerProfile(user_id=user_id, updated_at=updated_at).to_document()
        unknown = {k: v for k, v in minimal.items() if k not in ("user_id", *changed)}
        newer_or_same = {"user_id": user_id, "updated_at": {"$lte": updated_at}}
        with self._driver_errors():
            profiles = await self._profiles_writable()
            try:
                await profiles.update_one(
                    newer_or_same, {"$set": changed, "$setOnInsert": unknown}, upsert=True
                )
            except DuplicateKeyError:
                return False
        return True

    async def customers_without_consent(self) -> set[str]:
        with self._driver_errors():
            cursor = self._profiles_ready().find(
                {"personalisation_consent": False}, {"_id": 0, "user_id": 1}
            )
            documents = await cursor.to_list()
        return {document["user_id"] for document in documents}

    async def get_profile(self, user_id: str) -> CustomerProfile | None:
        return (await self.get_profiles([user_id])).get(user_id)

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, CustomerProfile]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        with self._driver_errors():
            cursor = self._profiles_ready().find({"user_id": {"$in": users}}, WITHOUT_ID)
            documents = await cursor.to_list()
        profiles = [CustomerProfile.model_validate(document) for document in documents]
        return {profile.user_id: profile for profile in profiles}

    # --- plumbing

    def _tombstones_ready(self) -> AsyncCollection[dict[str, Any]]:
        if self._tombstones is None:
            raise StoreUnavailable(f"{self!r} is not open")
        return self._tombstones

    def _audit_ready(self) -> AsyncCollection[dict[str, Any]]:
        if self._audit is None:
            raise StoreUnavailable(f"{self!r} is not open")
        return self._audit

    async def _newest(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        require_positive_limit(limit)
        with self._driver_errors():
            cursor = self._ready().find(query, WITHOUT_ID).sort(NEWEST_FIRST).limit(limit)
            # One reply for the whole answer: the first batch is otherwise 101 documents.
            return await cursor.batch_size(limit).to_list()

    def _ready(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise StoreUnavailable(f"{self!r} is not open")
        return self._collection

    def _profiles_ready(self) -> AsyncCollection[dict[str, Any]]:
        if self._profiles is None:
            raise StoreUnavailable(f"{self!r} is not open")
        return self._profiles

    async def _profiles_writable(self) -> AsyncCollection[dict[str, Any]]:
        """The profiles collection, once it is known to have its unique index (checked once)."""
        profiles = self._profiles_ready()
        if not self._profiles_unique:
            indexes = await (await profiles.list_indexes()).to_list()
            if satisfied_by(PROFILE_ID_UNIQUE, indexes) is None:
                raise StoreUnavailable(
                    f"MongoDB at {self._where}: {PROFILES_COLLECTION} has no unique index on "
                    "user_id, so a customer could get two profiles; run `finverse-reco migrate`"
                )
            self._profiles_unique = True
        return profiles

    async def _writable(self) -> AsyncCollection[dict[str, Any]]:
        """The collection, once it is known to have the unique `event_id` index (checked once)."""
        collection = self._ready()
        if not self._idempotent:
            indexes = await (await collection.list_indexes()).to_list()
            if satisfied_by(EVENT_ID_UNIQUE, indexes) is None:
                raise StoreUnavailable(
                    f"MongoDB at {self._where}: {self.collection_name} has no unique index on "
                    "event_id, so a redelivered event would be stored twice; run "
                    "`finverse-reco migrate`"
                )
            self._idempotent = True
        return collection

    @contextmanager
    def _driver_errors(self) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            raise StoreUnavailable(f"MongoDB at {self._where}: {reason}") from exc


def describe(write_error: dict[str, Any]) -> str:
    """A write error as a reason: its code, the code's name when it is known, the server's message."""
    code = write_error.get("code")
    name = TRANSIENT_WRITE_ERRORS.get(code) or KNOWN_REFUSALS.get(code)
    label = f"{code} {name}" if name else str(code)
    return f"MongoDB error {label}: {write_error.get('errmsg', '')}"[:MAX_REASON_CHARS]


def feedback_events(documents: list[dict[str, Any]]) -> list[FeedbackEvent]:
    """Documents as feedback; one this service did not write and cannot be read is left out."""
    events = []
    for document in documents:
        try:
            events.append(FeedbackEvent.from_document(document))
        except (KeyError, AttributeError, TypeError, ValueError):
            continue
    return events


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
