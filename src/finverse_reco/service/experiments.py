"""Online experiments: customers split into arms by a salted, stable hash of their id.

An experiment has an id, a salt and arms with traffic shares summing to 1; an arm may serve another
model version or another strategy (`popular`: the non-personalised baseline). Policy-variant arms
are not built: an arm naming a `policy` is refused (unknown field) rather than silently ignored.
A customer's arm is `sha256("<salt>:<id>")` read as a number in [0, 1) against the cumulative
shares, so every replica and every restart puts them in the same arm, with no state to share, and a
new salt reshuffles everyone. At most one experiment runs at a time; stopping it is one call, and a
stopped experiment stays in the file as a record.

The experiments live in one JSON file (`FINVERSE_EXPERIMENTS_FILE`), hand-written or written by the
admin API (atomically: a reader sees the old file or the new one). Every replica re-reads it when it
changes (`refresh`, polled with the model), so an experiment started or stopped on one replica
reaches the others within the poll interval. See docs/FEEDBACK.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from finverse_reco.events import ID_PATTERN
from finverse_reco.service.models import ModelWatcher

log = logging.getLogger(__name__)

SHARE_TOLERANCE = 1e-6
ArmStrategy = Literal["popular"]
Name = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]


class ExperimentError(ValueError):
    """An experiment or the experiments file is not valid; the message says why."""


class ExperimentConflict(ExperimentError):
    """The change clashes with the experiments there are (one running, an id taken)."""


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    share: float = Field(gt=0, le=1)
    # None: whatever the service serves outside the experiment.
    model_version: Annotated[str, Field(max_length=128)] | None = None
    strategy: ArmStrategy | None = None


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name
    salt: Annotated[str, Field(min_length=1, max_length=128)]
    arms: Annotated[tuple[Arm, ...], Field(min_length=1, max_length=20)]
    status: Literal["running", "stopped"] = "running"
    started_at: datetime
    stopped_at: datetime | None = None

    @model_validator(mode="after")
    def _arms_add_up(self) -> Experiment:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must differ")
        total = sum(arm.share for arm in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"arm shares must add up to 1, not {total:g}")
        return self

    def arm_of(self, subject_id: str) -> Arm:
        """The arm of a customer (or session, or product: whatever the request is about)."""
        return _Split(self).arm_of(subject_id)


class _ExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiments: list[Experiment] = []

    @model_validator(mode="after")
    def _one_running(self) -> _ExperimentsFile:
        ids = [experiment.id for experiment in self.experiments]
        if len(set(ids)) != len(ids):
            raise ValueError("experiment ids must differ")
        if sum(experiment.status == "running" for experiment in self.experiments) > 1:
            raise ValueError("at most one experiment may be running")
        return self


def bucket(salt: str, subject_id: str) -> float:
    """A stable point in [0, 1) for an id under a salt: the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(f"{salt}:{subject_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class _Split:
    """A running experiment's split in plain attributes (a pydantic model's are slower to read,
    and this is read on every request)."""

    __slots__ = ("arms", "bounds", "experiment", "salt")

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment.id
        self.salt = experiment.salt
        self.arms = experiment.arms
        bounds = list(accumulate(arm.share for arm in experiment.arms))
        bounds[-1] = 1.0  # shares add up to 1 within rounding: the last arm takes the rest
        self.bounds = tuple(bounds)

    def arm_of(self, subject_id: str) -> Arm:
        return self.arms[bisect_right(self.bounds, bucket(self.salt, subject_id))]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which experiment and arm a response was served under."""

    experiment: str
    arm: Arm


class ExperimentRegistry:
    """The experiments file, read when it changes; `assign` is what a request asks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._experiments: tuple[Experiment, ...] = ()
        self._running: Experiment | None = None
        self._split: _Split | None = None
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read

    @property
    def experiments(self) -> tuple[Experiment, ...]:
        return self._experiments

    @property
    def running(self) -> Experiment | None:
        return self._running

    def assign(self, subject_id: str) -> Assignment | None:
        split = self._split
        if split is None:
            return None
        return Assignment(split.experiment, split.arm_of(subject_id))

    def model_versions(self) -> set[str]:
        """The model versions the running experiment's arms serve (the model holder keeps them)."""
        if self._running is None:
            return set()
        return {arm.model_version for arm in self._running.arms if arm.model_version}

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; True if it did. A bad file raises
        ExperimentError and leaves the experiments as they were."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            changed = self._seen is not None
            self._set((), None)
            return changed
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return False
        self._set(tuple(read_experiments(self.path)), seen)
        return True

    def start(self, experiment: Experiment) -> Experiment:
        """Add a running experiment and write the file."""
        self.refresh()
        if any(known.id == experiment.id for known in self._experiments):
            raise ExperimentConflict(f"an experiment {experiment.id!r} exists already")
        if self._running is not None:
            raise ExperimentConflict(
                f"experiment {self._running.id!r} is running: stop it first (one at a time)"
            )
        self._write((*self._experiments, experiment))
        return experiment

    def stop(self, experiment_id: str) -> Experiment:
        """Stop an experiment (idempotent: a stopped one is returned as it is)."""
        self.refresh()
        found = [known for known in self._experiments if known.id == experiment_id]
        if not found:
            raise KeyError(experiment_id)
        if found[0].status == "stopped":
            return found[0]
        stopped = found[0].model_copy(update={"status": "stopped", "stopped_at": datetime.now(UTC)})
        self._write(
            tuple(stopped if known.id == experiment_id else known for known in self._experiments)
        )
        return stopped

    def _write(self, experiments: Sequence[Experiment]) -> None:
        document = _ExperimentsFile(experiments=list(experiments))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        staging.write_bytes(
            orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
        )
        os.replace(staging, self.path)
        stat = self.path.stat()
        self._set(tuple(experiments), (stat.st_mtime_ns, stat.st_size))

    def _set(self, experiments: tuple[Experiment, ...], seen: tuple[int, int] | None) -> None:
        self._experiments = experiments
        self._running = next((e for e in experiments if e.status == "running"), None)
        self._split = _Split(self._running) if self._running is not None else None
        self._seen = seen


def read_experiments(path: Path) -> list[Experiment]:
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ExperimentError(f"{path}: not readable as JSON ({exc})") from None
    try:
        return _ExperimentsFile.model_validate(raw).experiments
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ExperimentError(f"{path}: {problems}") from None


class Experiments:
    """The experiments as the service runs them: the registry, and the model versions its arms
    serve kept loaded beside CURRENT by the model watcher."""

    def __init__(self, registry: ExperimentRegistry, watcher: ModelWatcher) -> None:
        self.registry = registry
        self._watcher = watcher

    async def start(self, experiment: Experiment) -> Experiment:
        """Load the arms' model versions, then write the experiment. Raises ExperimentError when
        a version cannot be served (nothing is written) or ExperimentConflict."""
        wanted = {arm.model_version for arm in experiment.arms if arm.model_version}
        refused = await self._watcher.serve_also(self.registry.model_versions() | wanted)
        unusable = {version: why for version, why in refused.items() if version in wanted}
        if unusable:
            raise ExperimentError(
                "; ".join(
                    f"model version {v} cannot be served: {why}" for v, why in unusable.items()
                )
            )
        started = self.registry.start(experiment)
        await self.sync()
        return started

    def stop(self, experiment_id: str) -> Experiment:
        """Stop it: from the next request on, nobody is assigned to its arms (KeyError if unknown)."""
        return self.registry.stop(experiment_id)

    async def sync(self) -> None:
        """Re-read the file if it changed and keep the running arms' versions loaded (polled)."""
        try:
            self.registry.refresh()
        except ExperimentError as exc:
            log.error("experiments file refused, keeping the experiments as they were: %s", exc)
        await self._watcher.serve_also(self.registry.model_versions())

    async def run(self, poll_seconds: float) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # the poll must outlive any surprise
                log.exception("experiments poll failed")
            await asyncio.sleep(poll_seconds)
