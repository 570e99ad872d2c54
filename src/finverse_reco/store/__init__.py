"""Interaction storage behind one protocol; the URL scheme picks the implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from finverse_reco.store.base import (
    SCAN_FIELDS,
    EventsRefused,
    InsertResult,
    InteractionStore,
    ProductCount,
    RefusedEvent,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from finverse_reco.settings import Settings

__all__ = [
    "SCAN_FIELDS",
    "EventsRefused",
    "InsertResult",
    "InteractionStore",
    "ProcessKind",
    "ProductCount",
    "RefusedEvent",
    "StoreUnavailable",
    "open_store",
    "store_options",
    "store_url",
]

# serving: the API (short timeouts: a request must not wait for an election);
# worker: consume, seed-demo, migrate (rides out an election); trainer: a worker on the trainer URL.
ProcessKind = Literal["serving", "worker", "trainer"]


def open_store(url: str, **options: Any) -> InteractionStore:
    """Build (not yet open) the store for `url`: `sqlite:///path` or `mongodb://…`.

    `options` are `MongoOptions` fields for MongoDB (the URL's own options win over them).
    """
    if url.startswith("sqlite://"):
        from finverse_reco.store.sqlite import SQLiteInteractionStore

        return SQLiteInteractionStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from finverse_reco.store.mongo import MongoInteractionStore

        return MongoInteractionStore.from_url(url, **options)
    raise ValueError(f"unsupported store URL scheme in {url!r}: use sqlite:/// or mongodb://")


def store_url(settings: Settings, process: ProcessKind) -> str:
    if process == "trainer" and settings.store_trainer_url:
        return settings.store_trainer_url
    return settings.store_url


def store_options(settings: Settings, process: ProcessKind) -> dict[str, Any]:
    """The client defaults of one kind of process, from the settings (docs/STORES.md)."""
    timeout_ms = (
        settings.store_timeout_ms if process == "serving" else settings.store_worker_timeout_ms
    )
    return {
        "timeout_ms": timeout_ms,
        "server_selection_timeout_ms": timeout_ms,
        "pool_size": settings.store_pool_size,
    }
