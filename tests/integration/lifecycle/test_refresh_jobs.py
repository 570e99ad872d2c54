"""How a refresh job runs its training process: at a lower priority than serving, with its exit
code mapped to a state, and stopped along with the server that started it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from finverse_reco.service.refresh import TRAINING_NICENESS, JobState, RefreshJob, RefreshJobs
from finverse_reco.store.coordination_sqlite import SQLiteCoordination

from .harness import wait_until


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def reporting(outcome: str, reason: str, exit_code: int, version: str | None = None) -> list[str]:
    """A stand-in training that writes a result to its `--result-file` argument and exits."""
    result = {"outcome": outcome, "reason": reason, "version": version, "metrics": {"p@10": 0.25}}
    return python(
        "import sys, json\n"
        "path = sys.argv[sys.argv.index('--result-file') + 1]\n"
        f"open(path, 'w').write(json.dumps({result!r}))\n"
        "print('a progress bar, then a log line', file=sys.stderr)\n"
        f"sys.exit({exit_code})"
    )


async def job_records(tmp_path: Path) -> SQLiteCoordination:
    records = SQLiteCoordination(tmp_path / "jobs.db")
    await records.open()
    return records


@pytest.fixture
async def records(tmp_path: Path) -> SQLiteCoordination:
    return await job_records(tmp_path)


async def run_job(records: SQLiteCoordination, command: list[str]):
    jobs = RefreshJobs({}, records, command=command)
    job, started = await jobs.start("test")
    assert started and jobs.running is job and job.state is JobState.RUNNING
    assert (await records.job(job.id))["state"] == "running", "recorded as it starts"
    await jobs.wait()
    assert jobs.running is None and job.finished_at is not None
    # Any replica reads the same outcome from the store.
    assert RefreshJob.from_dict(await records.job(job.id)) == job
    return job


async def test_training_runs_at_a_lower_priority_than_serving(records):
    job = await run_job(
        records,
        python(
            "import json, os, sys\n"
            "path = sys.argv[sys.argv.index('--result-file') + 1]\n"
            "open(path, 'w').write(json.dumps({'outcome': 'activated', 'reason': str(os.nice(0))}))"
        ),
    )
    assert job.state is JobState.SUCCEEDED
    assert int(job.detail) == min(19, os.nice(0) + TRAINING_NICENESS)


@pytest.mark.parametrize(
    ("outcome", "exit_code", "state"),
    [
        ("activated", 0, JobState.SUCCEEDED),
        ("not_activated", 3, JobState.NOT_ACTIVATED),
        ("busy", 75, JobState.SKIPPED),
        ("failed", 1, JobState.FAILED),
    ],
)
async def test_the_written_result_decides_the_job_state(records, outcome, exit_code, state):
    job = await run_job(
        records, reporting(outcome, f"why: {outcome}", exit_code, "20261203T120000Z-abc123")
    )
    assert (job.state, job.detail) == (state, f"why: {outcome}")
    assert job.model_version == "20261203T120000Z-abc123"
    assert job.to_dict()["model_version"] == job.model_version


async def test_an_exit_code_that_contradicts_the_result_fails_the_job(records):
    job = await run_job(records, reporting("activated", "fine", exit_code=3))
    assert job.state is JobState.FAILED
    assert job.detail == "training exited with code 3 but reported activated"


async def test_a_training_that_writes_no_result_fails_with_its_last_stderr_line(records):
    job = await run_job(
        records, python("import sys; print('Killed: out of memory', file=sys.stderr); sys.exit(0)")
    )
    assert job.state is JobState.FAILED
    assert "wrote no result" in job.detail and "Killed: out of memory" in job.detail


async def test_an_invalid_result_fails_the_job(records):
    job = await run_job(records, reporting("promoted", "not an outcome", exit_code=0))
    assert job.state is JobState.FAILED
    assert job.detail.startswith("training exited with code 0: invalid training result (outcome:")


async def test_a_training_command_that_cannot_start_fails_the_job(records, tmp_path):
    job = await run_job(records, [str(tmp_path / "no-such-program")])
    assert job.state is JobState.FAILED and "could not run training" in job.detail


def process_gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" in status.read_text()
    except FileNotFoundError:
        return True


def test_a_stopping_server_takes_its_training_along(tmp_path):
    started = tmp_path / "pid"
    command = python(
        f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )

    async def start_and_stop() -> tuple[RefreshJobs, str]:
        jobs = RefreshJobs({}, await job_records(tmp_path), command=command)
        job, _ = await jobs.start("test")
        await asyncio.to_thread(
            wait_until,
            lambda: started.exists() and started.read_text(),
            within=10,
            what="the training process started",
        )
        return jobs, job.id  # leaving asyncio.run cancels the running job, as a server stop does

    jobs, job_id = asyncio.run(start_and_stop())
    pid = int(started.read_text())
    wait_until(lambda: process_gone(pid), within=10, what=f"training process {pid} ended")
    job = asyncio.run(jobs.get(job_id))
    assert job.state is JobState.FAILED and "cancelled" in job.detail
