"""Fixtures for the store contract: a real SQLite file and a real MongoDB wire-protocol server.

The MongoDB stand-in (`nx-27017`, from the dev extras) runs as a subprocess on a free port. Under
CI=true a stand-in that cannot start fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from finverse_reco.store import InteractionStore
from finverse_reco.store.mongo import MongoInteractionStore
from finverse_reco.store.sqlite import SQLiteInteractionStore

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
STAND_IN = "nx-27017"
START_SECONDS = 20.0
STORE_TIMEOUT_MS = 5000


class StandInUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stand_in_executable() -> str | None:
    beside_python = Path(sys.executable).with_name(STAND_IN)
    return str(beside_python) if beside_python.exists() else shutil.which(STAND_IN)


class MongoStandIn:
    """One nx-27017 process: start it, stop it with SIGTERM, start it again on the same port."""

    def __init__(self, workdir: Path, *, database: str = "memory", port: int | None = None) -> None:
        self.workdir = workdir
        self.database = database
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        executable = stand_in_executable()
        if executable is None:
            raise StandInUnavailable(f"{STAND_IN} is not installed (pip install -e '.[dev]')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "server.log"
        command = [executable, "--db", self.database, "-p", str(self.port)]
        # Own pid and log files: the defaults in /tmp are shared with anyone else running one.
        command += ["--pid-file", str(self.workdir / "server.pid"), "--log-file", str(log)]
        with (self.workdir / "output.log").open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        with MongoClient(self.url, serverSelectionTimeoutMS=250, connectTimeoutMS=250) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    output = (self.workdir / "output.log").read_text(errors="replace")[-2000:]
                    raise StandInUnavailable(f"{STAND_IN} exited at start: {output}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.1)
        self.stop()
        raise StandInUnavailable(f"{STAND_IN} did not answer a ping within {START_SECONDS:.0f} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def stand_in_missing(reason: str) -> None:
    message = f"the MongoDB stand-in is not available: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: service-backed tests never skip)")
    pytest.skip(message)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (until a test starts something there)."""
    return free_port()


@pytest.fixture
def start_stand_in(tmp_path: Path) -> Iterator[Callable[..., MongoStandIn]]:
    """Start stand-ins owned by one test; all are stopped after it."""
    started: list[MongoStandIn] = []

    def start(**options: object) -> MongoStandIn:
        server = MongoStandIn(tmp_path / f"stand-in-{len(started)}", **options)  # type: ignore[arg-type]
        started.append(server)
        try:
            server.start()
        except StandInUnavailable as exc:
            stand_in_missing(str(exc))
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One in-memory stand-in for the whole run; each test uses a database of its own."""
    server = MongoStandIn(tmp_path_factory.mktemp("mongo-stand-in"))
    try:
        server.start()
    except StandInUnavailable as exc:
        stand_in_missing(str(exc))
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], InteractionStore]:
    """A constructor for an unopened store of each kind, all pointing at the same fresh data."""
    if request.param == "sqlite":
        path = tmp_path / "interactions.db"
        return lambda: SQLiteInteractionStore(path)
    url = f"{request.getfixturevalue('mongo_url')}/finverse_test_{uuid.uuid4().hex[:12]}"
    return lambda: MongoInteractionStore.from_url(url, timeout_ms=STORE_TIMEOUT_MS)


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
