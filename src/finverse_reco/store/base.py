"""The interaction store contract. Implementations: `sqlite.py` (embedded), `mongo.py` (production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from finverse_reco.audit import AuditRecord
from finverse_reco.customers import CustomerProfile
from finverse_reco.events import FeedbackEvent, InteractionColumns, InteractionEvent

# The fields of a document that `scan`'s columns are made of (MongoDB projects to these, so a
# training scan reads and sends less).
SCAN_FIELDS = ("user_id", "type", "timestamp", "data")


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or failed for reasons outside the caller's input: try again later."""


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class RefusedEvent:
    """One event the store refused for good: writing it again would be refused again."""

    index: int  # its position in the batch given to `insert_many`
    event_id: str
    reason: str


class EventsRefused(Exception):
    """The store refused some events of a batch permanently (a schema validator, a constraint, a
    document too large) and stored all the others: `stored` counts those, so
    `stored.inserted + stored.duplicates + len(refused)` is the batch size.

    Distinct from `StoreUnavailable`: retrying the batch would store nothing more, so the caller
    dead-letters (or reports) the refused events and keeps the rest.
    """

    def __init__(self, stored: InsertResult, refused: Sequence[RefusedEvent]) -> None:
        self.stored = stored
        self.refused = tuple(refused)
        first = self.refused[0].reason if self.refused else ""
        super().__init__(f"{len(self.refused)} event(s) refused by the store, e.g. {first}")


@runtime_checkable
class InteractionStore(Protocol):
    """Where interactions live. Every method is async and never blocks the event loop.

    `scan` hands out typed columns (`InteractionColumns`), so training streams millions of
    interactions without an object per event.
    """

    async def open(self) -> None:
        """Connect (idempotent). Never builds indexes on a database server: `finverse-reco migrate`
        does (`store.migrate`); SQLite, a file the service owns, gets its schema here too."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable with a reason when the store cannot answer."""

    async def insert_many(self, events: Sequence[InteractionEvent]) -> InsertResult:
        """Store events; an `event_id` already stored counts as a duplicate, not an error.

        Raises `EventsRefused` when the store refused some events for good (the others are stored),
        `StoreUnavailable` when it could not say (nothing is known to be stored: retry the batch).
        """

    async def user_interactions(self, user_id: str, limit: int = 200) -> list[InteractionEvent]:
        """A user's most recent interactions, newest first."""

    async def session_interactions(
        self, session_id: str, limit: int = 200
    ) -> list[InteractionEvent]:
        """A session's interactions in time order, oldest first (the most recent `limit`)."""

    async def count(self, since: datetime | None = None) -> int: ...

    # --- the audit trail: append-only, one record per served list (docs/ACCOUNTABILITY.md)

    async def append_audit(self, records: Sequence[AuditRecord]) -> int:
        """Store the records; one whose `recommendation_id` is stored already is skipped (a batch
        written again after a timeout stores nothing twice). Returns how many were new."""

    async def audit_record(self, recommendation_id: str) -> AuditRecord | None: ...

    async def customer_audit(
        self, user_id: str, since: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """A customer's records served at or after `since`, newest first."""

    async def count_audit(self) -> int: ...

    async def purge_audit(self, before: datetime) -> int:
        """Delete the records served before `before` (the retention period); returns how many."""

    # --- erasure: tombstones are keyed hashes of customer ids (finverse_reco.erasure)

    async def add_tombstone(self, tombstone: str, erased_at: datetime) -> bool:
        """Keep a tombstone (idempotent); returns whether it is new."""

    async def tombstones(self) -> set[str]:
        """Every tombstone (what serving processes mask and training leaves out)."""

    async def erased_among(self, tombstones: Sequence[str]) -> set[str]:
        """Which of these tombstones are stored (one indexed read, for an ingestion batch)."""

    async def delete_customer(self, user_id: str) -> dict[str, int]:
        """Delete everything stored about the customer; how many of each kind were deleted
        (`interactions`, `audit_records`, `profiles`)."""

    async def user_activity(
        self, user_ids: Sequence[str], types: Sequence[str], since: datetime
    ) -> InteractionColumns:
        """The interactions of these users, of these types, with timestamp >= since, as columns
        in no particular order: what the policy step reads of each request's customer (products
        applied for since the last training, recent contacts), several customers in one read."""

    async def put_profile(self, profile: CustomerProfile) -> bool:
        """Store a customer's profile whole, unless the stored one has a newer `updated_at`
        (a redelivered older copy changes nothing). A profile whose `personalisation_consent` is
        None keeps the stored consent. Returns whether it was stored."""

    async def put_consent(self, user_id: str, consent: bool, updated_at: datetime) -> bool:
        """Set the customer's `personalisation_consent` and the profile's `updated_at`, keeping
        the rest of the profile (a profile with nothing else known when there was none), unless
        the stored profile has a newer `updated_at`. Returns whether it was stored."""

    async def customers_without_consent(self) -> set[str]:
        """The customers whose profile says `personalisation_consent: false` (training leaves
        their interactions out)."""

    async def get_profile(self, user_id: str) -> CustomerProfile | None: ...

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, CustomerProfile]:
        """The stored profiles of these customers, by id (customers without one are left out)."""

    def scan(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> AsyncIterator[InteractionColumns]:
        """Stream every interaction with since <= timestamp < until in batches of columns
        (training input). MongoDB reads only `SCAN_FIELDS`, from the trainer's URL, which may name
        a secondary (docs/STORES.md)."""

    async def events_of_types(
        self, types: Collection[str], since: datetime, until: datetime | None = None
    ) -> list[FeedbackEvent]:
        """The events of these types with since <= timestamp < until, newest first, as the fields
        feedback is judged by (online metrics read a period of impressions and reactions). A
        stored document that cannot be read is left out."""

    async def customers_events_of_types(
        self,
        user_ids: Collection[str],
        since: Mapping[str, datetime],
        limit: int,
    ) -> dict[str, list[FeedbackEvent]]:
        """Per customer, their events of each type in `since` with timestamp >= that type's own
        start, newest first, at most the newest `limit` OF EACH TYPE (customers with none are
        absent): many impressions never push an application out of the answer. The policy reads
        this for every request, for all the requests that arrived together at once: one round
        trip, no second validation."""
