"""Fixtures for the store contract: a real SQLite file and a real MongoDB wire-protocol server.

The MongoDB stand-in (`nx-27017`, from the dev extras) runs as a subprocess on a free port. Under
CI=true a stand-in that cannot start fails the tests; elsewhere they are skipped with the reason.
Every store starts on a database `migrate` has prepared, as an operator's would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from mongo_stand_in import (  # tests/support, on pytest's pythonpath
    STORE_OPTIONS,
    MongoStandIn,
    free_port,
    started_stand_in,
)
from pymongo import AsyncMongoClient

from finverse_reco.store import InteractionStore, open_store
from finverse_reco.store.migrate import migrate
from finverse_reco.store.mongo import MongoInteractionStore


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (until a test starts something there)."""
    return free_port()


@pytest.fixture
def start_stand_in(tmp_path: Path) -> Iterator[Callable[..., MongoStandIn]]:
    """Start stand-ins owned by one test; all are stopped after it."""
    started: list[MongoStandIn] = []

    def start(**options: object) -> MongoStandIn:
        server = started_stand_in(tmp_path / f"stand-in-{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One in-memory stand-in for the whole run; each test uses a database of its own."""
    server = started_stand_in(tmp_path_factory.mktemp("mongo-stand-in"))
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind: a SQLite file, or a MongoDB database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/interactions.db"
    return f"{request.getfixturevalue('mongo_url')}/finverse_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def new_store(store_url: str) -> Callable[[], InteractionStore]:
    """A constructor for an unopened store of each kind, all pointing at the same migrated data."""
    report = await migrate(store_url, **STORE_OPTIONS)
    assert report.ok, report
    return lambda: open_store(store_url, **STORE_OPTIONS)


@pytest.fixture
async def store(new_store: Callable[[], InteractionStore]) -> AsyncIterator[InteractionStore]:
    opened = new_store()
    await opened.open()
    yield opened
    await opened.close()
    if isinstance(opened, MongoInteractionStore):
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(opened.url)
        await client.drop_database(client.get_default_database())
        await client.close()
