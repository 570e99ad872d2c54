"""Interaction storage behind one protocol; the URL scheme picks the implementation."""

from finverse_reco.store.base import InsertResult, InteractionStore, StoreUnavailable

__all__ = ["InsertResult", "InteractionStore", "StoreUnavailable", "open_store"]


def open_store(url: str, **options: object) -> InteractionStore:
    """Build (not yet open) the store for `url`: `sqlite:///path` or `mongodb://…`."""
    if url.startswith("sqlite://"):
        from finverse_reco.store.sqlite import SQLiteInteractionStore

        return SQLiteInteractionStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from finverse_reco.store.mongo import MongoInteractionStore

        return MongoInteractionStore.from_url(url, **options)
    raise ValueError(f"unsupported store URL scheme in {url!r}: use sqlite:/// or mongodb://")
