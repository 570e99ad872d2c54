"""One MongoDB client and database, opened and closed with the process: what the artifact store
and the coordination records share (the interaction store keeps its own, with its collections)."""

from __future__ import annotations

from typing import Any, Self

from pymongo.asynchronous.database import AsyncDatabase

from finverse_reco.store.base import StoreUnavailable
from finverse_reco.store.mongo_options import MongoOptions, new_client, redact

DEFAULT_DATABASE = "finverse_interactions"


class MongoConnection:
    what = "the store"  # named in the error when used before `open`

    def __init__(self, url: str, *, options: MongoOptions | None = None) -> None:
        self.url = url
        self.options = options or MongoOptions()
        self._client = None
        self._database: AsyncDatabase[dict[str, Any]] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(url, options=MongoOptions(**options))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    async def open(self) -> None:
        if self._client is None:
            self._client = new_client(self.url, self.options)
            self._database = self._client.get_default_database(default=DEFAULT_DATABASE)

    async def close(self) -> None:
        client, self._client, self._database = self._client, None, None
        if client is not None:
            await client.close()

    @property
    def _db(self) -> AsyncDatabase[dict[str, Any]]:
        if self._database is None:
            raise StoreUnavailable(f"{self.what} is not open")
        return self._database
