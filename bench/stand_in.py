"""The MongoDB wire-protocol stand-in (nx-27017) for benchmarks: a free port, a scratch folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "support" / "stand_in_server.py"


class MongoStandIn:
    """nx-27017 on a free port, one SQLite file per logical database under a temporary folder."""

    def __init__(self, workdir: Path, *, enabled: bool = True) -> None:
        self.workdir = workdir
        self.enabled = enabled
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> MongoStandIn:
        if not self.enabled:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The tests' launcher: nx-27017 with its fixes (`_id` in compound indexes, which `migrate`
        # creates; date-range finds without a whole-collection scan).
        command = [sys.executable, str(SERVER_SCRIPT)]
        command += ["--data-dir", str(self.workdir), "-p", str(self.port)]
        command += [
            "--pid-file",
            str(self.workdir / "pid"),
            "--log-file",
            str(self.workdir / "log"),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        with MongoClient(f"mongodb://127.0.0.1:{self.port}", serverSelectionTimeoutMS=250) as c:
            while True:
                try:
                    c.admin.command("ping")
                    return self
                except Exception:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError("the MongoDB stand-in nx-27017 did not start") from None

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
