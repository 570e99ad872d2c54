"""How a refresh job runs its training process: at a lower priority than serving, with its exit
code mapped to a state, and stopped along with the server that started it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from finverse_reco.service.refresh import TRAINING_NICENESS, JobState, RefreshJobs

from .harness import wait_until


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def run_job(command: list[str]):
    jobs = RefreshJobs({}, command=command)
    job, started = jobs.start("test")
    assert started and jobs.running is job and job.state is JobState.RUNNING
    await jobs.wait()
    assert jobs.running is None and job.finished_at is not None
    return job


async def test_training_runs_at_a_lower_priority_than_serving():
    job = await run_job(python("import os, sys; print(os.nice(0), file=sys.stderr)"))
    assert job.state is JobState.SUCCEEDED
    assert int(job.detail) == min(19, os.nice(0) + TRAINING_NICENESS)


@pytest.mark.parametrize(
    ("exit_code", "state", "detail"),
    [
        (0, JobState.SUCCEEDED, "last line"),
        (3, JobState.NOT_ACTIVATED, "last line"),
        (75, JobState.SKIPPED, "another training was already running"),
        (1, JobState.FAILED, "last line"),
    ],
)
async def test_the_exit_code_decides_the_job_state(exit_code, state, detail):
    job = await run_job(
        python(
            f"import sys; print('first line\\nlast line', file=sys.stderr); sys.exit({exit_code})"
        )
    )
    assert (job.state, job.detail) == (state, detail)


async def test_a_training_command_that_cannot_start_fails_the_job(tmp_path):
    job = await run_job([str(tmp_path / "no-such-program")])
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
        jobs = RefreshJobs({}, command=command)
        job, _ = jobs.start("test")
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
    job = jobs.get(job_id)
    assert job.state is JobState.FAILED and "cancelled" in job.detail
