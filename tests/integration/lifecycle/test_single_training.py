"""One training at a time: ten concurrent refresh requests start one job, and across processes the
training lease in the store lets one `train` run while another exits 75 (busy)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from finverse_reco import compose
from finverse_reco.model.artifacts import current_version, list_versions
from finverse_reco.service.refresh import JobState, RefreshJobs
from finverse_reco.service.training_result import EXIT_BUSY
from finverse_reco.settings import settings_env

from .harness import ADMIN, RECS, ServeProcess, wait_for_job


def train_command(settings, **overrides: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, **settings_env(settings), "OPENBLAS_NUM_THREADS": "1", **overrides}
    return [sys.executable, "-m", "finverse_reco", "train"], env


@pytest.mark.slow
async def test_ten_concurrent_refresh_requests_start_one_training(world, tmp_path):
    before = list_versions(world.model_dir)
    with ServeProcess(world, tmp_path / "serve.log") as server:
        async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=10) as client:
            responses = await asyncio.gather(
                *(client.post(f"{RECS}/refresh-model") for _ in range(10))
            )
        assert [r.status_code for r in responses] == [202] * 10
        job_ids = {r.json()["job_id"] for r in responses}
        assert len(job_ids) == 1, job_ids
        job = await asyncio.to_thread(wait_for_job, server.url, job_ids.pop())
    assert job["state"] == "succeeded", job
    after = list_versions(world.model_dir)
    assert len(after) == len(before) + 1, "exactly one training ran"
    assert current_version(world.model_dir) == after[-1]


@pytest.mark.slow
def test_two_train_processes_at_once_one_trains_one_exits_busy(world, tmp_path):
    before = list_versions(world.model_dir)
    # Enough epochs that the first run still holds the lock when the second one starts.
    command, env = train_command(world, FINVERSE_MODEL_EPOCHS="60")
    logs = [tmp_path / f"train-{n}.log" for n in range(2)]
    runs = []
    for log in logs:
        with log.open("w") as output:
            runs.append(subprocess.Popen(command, env=env, stdout=output, stderr=output))
    results = [
        (run.wait(timeout=120), log.read_text()) for run, log in zip(runs, logs, strict=True)
    ]
    codes = sorted(code for code, _ in results)
    assert codes == [0, EXIT_BUSY], results
    busy_output = next(output for code, output in results if code == EXIT_BUSY)
    assert "another training holds the training lease" in busy_output
    assert len(list_versions(world.model_dir)) == len(before) + 1


async def held_lease(settings):
    coordination = compose.coordination(settings, "worker")
    await coordination.open()
    lease = await coordination.acquire_lease("another trainer", ttl_seconds=600)
    assert lease is not None
    return coordination, lease


async def test_a_train_run_while_the_lease_is_held_exits_busy_and_publishes_nothing(world):
    before = list_versions(world.model_dir)
    command, env = train_command(world)
    coordination, lease = await held_lease(world)
    busy = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    await coordination.release_lease(lease)
    assert busy.returncode == EXIT_BUSY, busy.stderr
    assert list_versions(world.model_dir) == before
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(list_versions(world.model_dir)) == len(before) + 1


async def test_a_refresh_job_is_skipped_while_another_process_trains(world):
    """The serving side of the lease: a refresh while e.g. `train --schedule` trains is skipped."""
    coordination, lease = await held_lease(world)
    jobs = RefreshJobs(settings_env(world), coordination)
    job, started = await jobs.start("test")
    again, started_again = await jobs.start("test")
    assert started and not started_again and again is job
    await jobs.wait()
    await coordination.release_lease(lease)
    assert job.state is JobState.SKIPPED, job
    assert job.finished_at is not None and jobs.running is None


async def test_a_refresh_job_records_the_fits_progress_and_its_version(world):
    """The training child reports its epochs into the job's record; the record ends with them."""
    coordination = compose.coordination(world, "worker")
    await coordination.open()
    jobs = RefreshJobs(settings_env(world), coordination)
    job, _ = await jobs.start("test")
    await jobs.wait()
    recorded = await coordination.job(job.id)
    assert recorded["state"] == "succeeded", recorded
    progress = recorded["progress"]
    assert progress["epochs_total"] >= world.model_epochs
    assert progress["epochs_done"] == progress["epochs_total"]
    assert recorded["model_version"] == current_version(world.model_dir)
