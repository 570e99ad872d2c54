"""MongoDB client options: this service's defaults, under whatever the URL says.

PyMongo lets keyword arguments override the URL. Here it is the other way round: an option written
in `FINVERSE_STORE_URL` (`?serverSelectionTimeoutMS=…&maxPoolSize=…&w=1`) is the operator's
decision and always wins; the settings only fill in what the URL leaves out. docs/STORES.md lists
the options and their defaults per process kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import split_options

APP_NAME = "finverse-reco"
DEFAULT_TIMEOUT_MS = 2000
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 2000
DEFAULT_POOL_SIZE = 50
# An acknowledged batch is on a majority of the replica set, so an election cannot roll it back
# after the consumer has acked its messages to RabbitMQ (w:1 could, and the events would be lost).
DEFAULT_WRITE_CONCERN = "majority"


@dataclass(frozen=True, slots=True)
class MongoOptions:
    """The defaults a process kind gives its client (settings: `store_options` in compose.py)."""

    # timeoutMS: the client-side operation timeout (CSOT) of every operation; the driver sends the
    # remaining time as maxTimeMS, retries a retryable read or write within it, and waits for a
    # server at most that long (PyMongo then ignores serverSelectionTimeoutMS). None: no limit
    # (`migrate`, whose index builds may take minutes).
    timeout_ms: int | None = DEFAULT_TIMEOUT_MS
    # serverSelectionTimeoutMS and connectTimeoutMS: how long to wait for a suitable server (e.g. a
    # new primary during an election) where no operation timeout applies, and to connect.
    server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
    pool_size: int = DEFAULT_POOL_SIZE  # maxPoolSize
    write_concern: str | int = DEFAULT_WRITE_CONCERN  # w

    def __post_init__(self) -> None:
        if min(self.timeout_ms or 1, self.server_selection_timeout_ms, self.pool_size) < 1:
            raise ValueError("timeouts and the pool size must be at least 1")

    def defaults(self) -> dict[str, Any]:
        """The options by their MongoDB URI names (PyMongo takes the same names as keywords)."""
        defaults: dict[str, Any] = {
            "serverSelectionTimeoutMS": self.server_selection_timeout_ms,
            "connectTimeoutMS": self.server_selection_timeout_ms,
            "maxPoolSize": self.pool_size,
            "w": self.write_concern,
            "appname": APP_NAME,
        }
        if self.timeout_ms is not None:
            defaults["timeoutMS"] = self.timeout_ms
        return defaults


def url_option_names(url: str) -> set[str]:
    """The options the URL sets, lower-cased (URI option names are case-insensitive)."""
    query = url.partition("?")[2]  # how PyMongo splits it too; credentials are percent-encoded
    if not query:
        return set()
    try:
        options = split_options(query, validate=False, normalize=False)
    except (InvalidURI, ConfigurationError) as exc:
        raise ValueError(f"invalid options in the MongoDB URL {redact(url)!r}: {exc}") from None
    return {name.lower() for name in options}


def client_options(url: str, options: MongoOptions) -> dict[str, Any]:
    """The keyword arguments for the client: the defaults the URL does not set itself."""
    from_url = url_option_names(url)
    return {
        name: value for name, value in options.defaults().items() if name.lower() not in from_url
    }


def new_client(url: str, options: MongoOptions) -> AsyncMongoClient[dict[str, Any]]:
    """A client (it connects on first use). Datetimes come back aware, in UTC, always."""
    try:
        return AsyncMongoClient(url, tz_aware=True, tzinfo=UTC, **client_options(url, options))
    except (ConfigurationError, ValueError) as exc:
        raise ValueError(f"invalid MongoDB URL {redact(url)!r}: {exc}") from None


def redact(url: str) -> str:
    """The URL without credentials, fit for logs and /ready."""
    return re.sub(r"//[^@/]*@", "//", url)
