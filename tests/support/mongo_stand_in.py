"""A MongoDB wire-protocol server for tests: the nx-27017 stand-in, as a subprocess on a free port.

It runs through `stand_in_server.py`, which fixes two gaps of the stand-in (`_id` inside a compound
index; date-range finds that decoded the whole collection); docs/STORES.md lists the others."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
STAND_IN = "nx-27017"
SERVER_SCRIPT = Path(__file__).with_name("stand_in_server.py")
START_SECONDS = 20.0
STORE_TIMEOUT_MS = 5000
# Store options for tests on the stand-in: it holds off its heartbeat replies while it works (a
# 10,000-document insert takes about a second), so it gets longer timeouts than a real server needs.
STORE_OPTIONS = {"server_selection_timeout_ms": STORE_TIMEOUT_MS, "timeout_ms": 30_000}


class StandInUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stand_in_command() -> list[str] | None:
    """The stand-in behind its fix, in this Python (None: nx-27017 is not installed here)."""
    if importlib.util.find_spec("nx_27017") is None:
        return None
    return [sys.executable, str(SERVER_SCRIPT)]


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
        command = stand_in_command()
        if command is None:
            raise StandInUnavailable(f"{STAND_IN} is not installed (pip install -e '.[dev]')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "server.log"
        command += ["--db", self.database, "-p", str(self.port)]
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


def started_stand_in(workdir: Path, **options: object) -> MongoStandIn:
    """A running stand-in; when it cannot start, the test fails in CI and is skipped elsewhere."""
    server = MongoStandIn(workdir, **options)  # type: ignore[arg-type]
    try:
        server.start()
    except StandInUnavailable as exc:
        stand_in_missing(str(exc))
    return server


def empty_store_url(request: pytest.FixtureRequest, where: Path, database: str) -> str:
    """The URL of an empty store of the kind `request.param` names: a SQLite file in `where`, or
    `database` on a stand-in of its own, stopped after the test."""
    if request.param == "sqlite":
        return f"sqlite:///{where}/interactions.db"
    server = started_stand_in(where / "mongo")
    request.addfinalizer(server.stop)
    return f"{server.url}/{database}"
