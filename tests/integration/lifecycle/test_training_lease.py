"""The training lease across trainers that share only the store (FINVERSE_ARTIFACTS=store, each with
its own empty model directory): one trains at a time, a killed trainer's lease expires and the next
one trains, and a trainer paused past its lease cannot activate what it trained."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from finverse_reco import compose
from finverse_reco.service.training_result import EXIT_BUSY, EXIT_NOT_ACTIVATED
from finverse_reco.settings import Settings, settings_env

from .harness import wait_until

# Long enough for a second trainer to start (Python and its imports take seconds here) while the
# killed one's lease still holds; short enough to wait out.
LEASE_SECONDS = 15.0


def store_mode(world: Settings, cache: Path, **overrides) -> Settings:
    return world.model_copy(
        update={
            "artifacts": "store",
            "model_dir": cache,
            "training_lease_seconds": LEASE_SECONDS,
            **overrides,
        }
    )


class Trainer:
    """`finverse-reco train` in a subprocess, with its result file and output."""

    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.result_file = workdir / f"{name}.json"
        self.log = workdir / f"{name}.log"
        env = {**os.environ, **settings_env(settings), "OPENBLAS_NUM_THREADS": "1"}
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "finverse_reco",
                    "train",
                    "--result-file",
                    str(self.result_file),
                ],
                env=env,
                cwd=workdir,
                stdout=output,
                stderr=output,
            )

    def wait(self, timeout: float = 180) -> int:
        return self.process.wait(timeout=timeout)

    def result(self) -> dict:
        return orjson.loads(self.result_file.read_bytes())


def lease_holder_pid(settings: Settings) -> int | None:
    """The pid holding an unexpired training lease (SQLite: read it without taking it)."""
    path = compose._sqlite_path(settings.store_url)
    try:
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT holder, expires_at FROM training_lease").fetchone()
    except sqlite3.OperationalError:
        return None  # the table does not exist yet
    if row is None or row[1] <= time.time():
        return None
    return int(row[0].rsplit(":", 1)[1])


async def store_state(settings: Settings) -> tuple[str | None, list[str]]:
    artifacts = compose.artifact_store(settings)
    await artifacts.open()
    try:
        return await artifacts.current(), await artifacts.list_versions()
    finally:
        await artifacts.close()


@pytest.mark.slow
def test_two_trainers_at_once_exactly_one_trains(world, tmp_path):
    trainers = [
        Trainer(
            store_mode(world, tmp_path / f"cache-{n}", model_epochs=60), tmp_path / "run", f"t{n}"
        )
        for n in range(2)
    ]
    codes = sorted(trainer.wait() for trainer in trainers)
    assert codes == [0, EXIT_BUSY], [t.log.read_text()[-800:] for t in trainers]
    results = {t.result()["outcome"] for t in trainers}
    assert results == {"activated", "busy"}
    active, versions = asyncio.run(store_state(store_mode(world, tmp_path / "cache-0")))
    assert len(versions) == 1 and active == versions[0]


@pytest.mark.slow
def test_a_killed_trainers_lease_expires_and_the_next_one_trains(world, tmp_path):
    killed = Trainer(store_mode(world, tmp_path / "cache-a", model_epochs=400), tmp_path, "a")
    settings = store_mode(world, tmp_path / "cache-b", model_epochs=5)
    wait_until(lambda: lease_holder_pid(settings) == killed.process.pid, within=60, what="lease")
    killed.process.kill()  # SIGKILL: no cleanup, the lease stays behind
    killed.wait()
    killed_at = time.time()

    refused = Trainer(settings, tmp_path, "b")
    assert refused.wait() == EXIT_BUSY, refused.log.read_text()[-800:]
    assert time.time() - killed_at < LEASE_SECONDS, "the refusal came from the killed one's lease"

    wait_until(lambda: lease_holder_pid(settings) is None, within=LEASE_SECONDS + 2, what="expiry")
    after = Trainer(settings, tmp_path, "c")
    assert after.wait() == 0, after.log.read_text()[-800:]
    active, versions = asyncio.run(store_state(settings))
    assert versions == [active] == [after.result()["version"]]


@pytest.mark.slow
def test_a_trainer_paused_past_its_lease_cannot_activate(world, tmp_path):
    lease = {"training_lease_seconds": 4.0}
    stale = Trainer(
        store_mode(world, tmp_path / "cache-a", model_epochs=150, **lease), tmp_path, "stale"
    )
    settings = store_mode(world, tmp_path / "cache-b", model_epochs=5, **lease)
    wait_until(lambda: lease_holder_pid(settings) == stale.process.pid, within=60, what="lease")
    time.sleep(1.0)  # into its training
    os.kill(stale.process.pid, signal.SIGSTOP)  # a long GC pause, a frozen VM, a partition
    try:
        wait_until(
            lambda: lease_holder_pid(settings) is None, within=LEASE_SECONDS + 2, what="expiry"
        )
        fresh = Trainer(settings, tmp_path, "fresh")
        assert fresh.wait() == 0, fresh.log.read_text()[-800:]
    finally:
        os.kill(stale.process.pid, signal.SIGCONT)
    assert stale.wait() == EXIT_NOT_ACTIVATED, stale.log.read_text()[-800:]
    result = stale.result()
    assert result["outcome"] == "not_activated" and "lease" in result["reason"], result
    active, versions = asyncio.run(store_state(settings))
    assert active == fresh.result()["version"]
    assert result["version"] in versions, "what it trained is kept, inactive"
