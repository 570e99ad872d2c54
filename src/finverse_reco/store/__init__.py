"""Interaction storage behind one protocol; the URL scheme picks the implementation."""

from __future__ import annotations

from typing import Any

from finverse_reco.store.base import (
    SCAN_FIELDS,
    EventsRefused,
    InsertResult,
    InteractionStore,
    RefusedEvent,
    StoreUnavailable,
)

__all__ = [
    "SCAN_FIELDS",
    "EventsRefused",
    "InsertResult",
    "InteractionStore",
    "RefusedEvent",
    "StoreUnavailable",
    "open_store",
]


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
