"""Model refresh on demand and on a schedule, each run in a child `finverse-reco train` process.

A child process keeps training off the serving event loop and the GIL. While a job runs, another
request to this process gets that job back instead of a second training; across processes and
replicas the training lease decides (the child exits busy, the job is `skipped`). Job records live
in the store (`Coordination`), so any replica answers `GET .../refresh-model/{job}`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from finverse_reco import telemetry
from finverse_reco.schedule import seconds_until_next
from finverse_reco.service.training_result import (
    TrainingOutcome,
    TrainingResult,
    TrainingResultError,
)
from finverse_reco.store import StoreUnavailable
from finverse_reco.store.coordination import Coordination

log = logging.getLogger(__name__)

# Training shares the machine with the requests this process serves: it gets what they leave.
TRAINING_NICENESS = 19


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    NOT_ACTIVATED = "not_activated"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(slots=True)
class RefreshJob:
    id: str
    trigger: str
    state: JobState = JobState.RUNNING
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    detail: str = ""
    model_version: str | None = None  # the version the training wrote, activated or not
    progress: dict[str, int] | None = None  # {"epochs_done", "epochs_total"}, from the training

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "state": self.state.value,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "detail": self.detail,
            "model_version": self.model_version,
            "progress": self.progress,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RefreshJob:
        finished = record.get("finished_at")
        return cls(
            id=str(record["job_id"]),
            trigger=str(record["trigger"]),
            state=JobState(record["state"]),
            started_at=datetime.fromisoformat(str(record["started_at"])),
            finished_at=datetime.fromisoformat(finished) if finished else None,
            detail=str(record.get("detail") or ""),
            model_version=record.get("model_version"),
            progress=record.get("progress"),
        )


class RefreshJobs:
    """Starts training processes, one at a time per process, and records every job in the store."""

    def __init__(
        self,
        child_env: Mapping[str, str],
        records: Coordination,
        *,
        command: list[str] | None = None,
    ) -> None:
        self._env = {**os.environ, **child_env}
        self._records = records
        self._command = command or [sys.executable, "-m", "finverse_reco", "train"]
        self._running: RefreshJob | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, trigger: str) -> tuple[RefreshJob, bool]:
        """The running job (False) or a newly started one (True). Never two trainings at once.
        Raises StoreUnavailable if the job cannot be recorded (then nothing is started)."""
        if self._running is not None:
            return self._running, False
        job = RefreshJob(id=uuid.uuid4().hex, trigger=trigger)
        self._running = job
        try:
            await self._records.save_job(job.to_dict())
        except BaseException:
            self._running = None
            raise
        self._task = asyncio.create_task(self._run(job), name=f"refresh-{job.id}")
        return job, True

    async def get(self, job_id: str) -> RefreshJob | None:
        """A job any replica started, as recorded (with the training's progress). This process's
        running job is answered from memory when the records cannot be read."""
        running = (
            self._running if self._running is not None and self._running.id == job_id else None
        )
        try:
            record = await self._records.job(job_id)
        except StoreUnavailable:
            if running is None:
                raise
            return running
        return RefreshJob.from_dict(record) if record is not None else running

    @property
    def running(self) -> RefreshJob | None:
        return self._running

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, job: RefreshJob) -> None:
        started = time.perf_counter()
        process: asyncio.subprocess.Process | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="finverse-refresh-") as scratch:
                result_file = Path(scratch) / "result.json"
                process = await asyncio.create_subprocess_exec(
                    *self._command,
                    "--result-file",
                    str(result_file),
                    "--job-id",
                    job.id,
                    env=self._env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
                _lower_priority(process.pid)
                _, stderr = await process.communicate()
                _finish(job, process.returncode, result_file, stderr)
        except asyncio.CancelledError:
            # The server is stopping: take its training along rather than leave an orphan behind.
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
            job.state, job.detail = JobState.FAILED, "cancelled: the server stopped"
            raise
        except Exception as exc:  # a job must always finish with a state, whatever happened
            job.state, job.detail = JobState.FAILED, f"could not run training: {exc}"
        finally:
            job.finished_at = datetime.now(UTC)
            try:
                recorded = await self._records.job(job.id)  # the progress the training wrote
                job.progress = (recorded or {}).get("progress", job.progress)
                await self._records.save_job(job.to_dict())
            except StoreUnavailable as exc:
                log.error("refresh job %s finished but could not be recorded: %s", job.id, exc)
            self._running = None
            seconds = time.perf_counter() - started
            telemetry.record_training(job.state.value, seconds)
            log.info(
                "refresh job %s (%s) %s in %.1fs: %s",
                job.id,
                job.trigger,
                job.state,
                seconds,
                job.detail,
            )


def _lower_priority(pid: int) -> None:
    """Renice a just-started child, before it starts its training threads (they inherit it)."""
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, own + TRAINING_NICENESS))
    except OSError as exc:  # e.g. a platform without priorities: train at full priority
        log.warning("could not lower the training process's priority: %s", exc)


_JOB_STATES = {
    TrainingOutcome.ACTIVATED: JobState.SUCCEEDED,
    TrainingOutcome.NOT_ACTIVATED: JobState.NOT_ACTIVATED,
    TrainingOutcome.BUSY: JobState.SKIPPED,
    TrainingOutcome.FAILED: JobState.FAILED,
}


def _finish(job: RefreshJob, returncode: int | None, result_file: Path, stderr: bytes) -> None:
    """The job's state from the result the training wrote; its exit code must agree with it."""
    try:
        result = TrainingResult.read(result_file)
    except TrainingResultError as exc:
        # A crash (killed, out of memory, a bug before the result was written): stderr's end is
        # the best clue an operator gets.
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:]
        job.state = JobState.FAILED
        job.detail = f"training exited with code {returncode}: {exc}" + (
            f" ({tail[0][:500]})" if tail else ""
        )
        return
    if result.exit_code != returncode:
        job.state = JobState.FAILED
        job.detail = f"training exited with code {returncode} but reported {result.outcome}"
        return
    job.state, job.detail, job.model_version = (
        _JOB_STATES[result.outcome],
        result.reason,
        result.version,
    )


class RefreshScheduler:
    """Starts a refresh job at every scheduled time (inside `serve`, embedded mode)."""

    def __init__(self, jobs: RefreshJobs, schedule: str) -> None:
        self._jobs = jobs
        self._schedule = schedule
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while (delay := seconds_until_next(self._schedule)) is not None:
            await asyncio.sleep(delay)
            try:
                await self._jobs.start("schedule")
            except StoreUnavailable as exc:  # the next scheduled time tries again
                log.error("scheduled refresh not started: %s", exc)

    def start(self) -> None:
        if self._schedule != "off":
            self._task = asyncio.create_task(self.run(), name="refresh-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
