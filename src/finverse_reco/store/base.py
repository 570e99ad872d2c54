"""The interaction store contract. Implementations: `sqlite.py` (embedded), `mongo.py` (production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from finverse_reco.events import InteractionEvent


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or refused an operation for reasons outside the caller's input."""


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int
    duplicates: int


@runtime_checkable
class InteractionStore(Protocol):
    """Where interactions live. Every method is async and never blocks the event loop.

    Documents handed out by `scan` are plain dicts in the seed's shape (the output of
    `InteractionEvent.to_document()`), so training can stream millions without building models.
    """

    async def open(self) -> None:
        """Connect and create the schema and indexes (idempotent)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable with a reason when the store cannot answer."""

    async def insert_many(self, events: Sequence[InteractionEvent]) -> InsertResult:
        """Store events; an `event_id` already stored counts as a duplicate, not an error."""

    async def user_interactions(self, user_id: str, limit: int = 200) -> list[InteractionEvent]:
        """A user's most recent interactions, newest first."""

    async def session_interactions(
        self, session_id: str, limit: int = 200
    ) -> list[InteractionEvent]:
        """A session's interactions in time order, oldest first (the most recent `limit`)."""

    async def count(self, since: datetime | None = None) -> int: ...

    def scan(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Stream every interaction with since <= timestamp < until in batches (training input)."""
