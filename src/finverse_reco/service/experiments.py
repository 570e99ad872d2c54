"""Online experiments: customers split into arms by a salted, stable hash of their id.

An experiment has an id, a salt and arms with traffic shares summing to 1; an arm may serve another
model version, another strategy (`popular`: the non-personalised baseline) and a policy variant (a
rules file that tightens the base rules and can never relax them: policy/variants.py). Each
variant is loaded and compiled once, when the experiment is read, and carried by the arm's
`Assignment`, so a request finds its policy with the arm. A customer's arm is
`sha256("<salt>:<id>")` read as a number in [0, 1) against the cumulative shares, so every replica
and every restart puts them in the same arm, with no state to share, and a new salt reshuffles
everyone. At most one experiment runs at a time; stopping it is one call, and a
stopped experiment stays in the file as a record.

The experiments live in one JSON file (`FINVERSE_EXPERIMENTS_FILE`), hand-written or written by the
admin API (atomically: a reader sees the old file or the new one). Every replica re-reads it, and
the running experiment's variant files, when one changes (`refresh`, polled with the model), so an
experiment started or stopped on one replica reaches the others within the poll interval. A bad
file or variant is refused whole: what was running keeps running. See docs/FEEDBACK.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from finverse_reco.events import ID_PATTERN
from finverse_reco.policy import Policy, PolicyFileError, PolicyVariants, check_variant_name
from finverse_reco.service.models import ModelWatcher

log = logging.getLogger(__name__)

SHARE_TOLERANCE = 1e-6
ArmStrategy = Literal["popular"]
Name = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
VariantName = Annotated[str, Field(max_length=128), AfterValidator(check_variant_name)]


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
    # None: the base rules, as outside the experiment.
    policy: VariantName | None = Field(
        None,
        description="A policy variant: a rules file's name in FINVERSE_POLICY_VARIANTS_DIR "
        "(e.g. strict.toml), served on top of the base rules, which it can only tighten",
    )


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
        return _Split(self).assign(subject_id).arm


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


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which experiment and arm a response was served under, and the arm's policy: the base
    tightened by its variant (None: the base policy)."""

    experiment: str
    arm: Arm
    policy: Policy | None = None


class _Split:
    """A running experiment's split in plain attributes (a pydantic model's are slower to read,
    and this is read on every request), with each arm's assignment made once."""

    __slots__ = ("assignments", "bounds", "salt")

    def __init__(
        self, experiment: Experiment, policies: Sequence[Policy | None] | None = None
    ) -> None:
        self.salt = experiment.salt
        policies = policies or [None] * len(experiment.arms)
        self.assignments = tuple(
            Assignment(experiment.id, arm, policy)
            for arm, policy in zip(experiment.arms, policies, strict=True)
        )
        bounds = list(accumulate(arm.share for arm in experiment.arms))
        bounds[-1] = 1.0  # shares add up to 1 within rounding: the last arm takes the rest
        self.bounds = tuple(bounds)

    def assign(self, subject_id: str) -> Assignment:
        return self.assignments[bisect_right(self.bounds, bucket(self.salt, subject_id))]


Stamp = tuple[int, int] | None  # a file's (mtime_ns, size) when read; None: there was none


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The experiments as read, with the running one's split and variant policies compiled."""

    experiments: tuple[Experiment, ...]
    running: Experiment | None = None
    split: _Split | None = None
    variant_policies: tuple[Policy, ...] = ()
    variant_files: dict[Path, Stamp] = field(default_factory=dict)


class ExperimentRegistry:
    """The experiments file, read when it changes; `assign` is what a request asks. Arms naming
    a policy variant need `variants` (the base policy and the directory of variant files)."""

    def __init__(self, path: Path, variants: PolicyVariants | None = None) -> None:
        self.path = Path(path)
        self._variants = variants
        self._experiments: tuple[Experiment, ...] = ()
        self._running: Experiment | None = None
        self._split: _Split | None = None
        self._variant_policies: tuple[Policy, ...] = ()
        self._seen: Stamp = None  # the experiments file's, when last read
        self._variant_files: dict[Path, Stamp] = {}  # the running experiment's variants'

    @property
    def experiments(self) -> tuple[Experiment, ...]:
        return self._experiments

    @property
    def running(self) -> Experiment | None:
        return self._running

    @property
    def variant_policies(self) -> tuple[Policy, ...]:
        """The policies the running experiment's arms serve besides the base (each the base
        tightened by its variant); the same tuple until the experiments change."""
        return self._variant_policies

    def assign(self, subject_id: str) -> Assignment | None:
        split = self._split
        if split is None:
            return None
        return split.assign(subject_id)

    def model_versions(self) -> set[str]:
        """The model versions the running experiment's arms serve (the model holder keeps them)."""
        if self._running is None:
            return set()
        return {arm.model_version for arm in self._running.arms if arm.model_version}

    def refresh(self) -> bool:
        """Re-read the file if it or a variant file of the running experiment changed since the
        last read; True if one did. A bad file or variant raises ExperimentError and leaves the
        experiments as they were."""
        seen = _stamp(self.path)
        if seen == self._seen and not self._variants_changed():
            return False
        self._set(self._load(self._on_disk(seen)), seen)
        return True

    def variant_policies_of(self, experiment: Experiment) -> tuple[Policy | None, ...]:
        """Each arm's policy: the base tightened by the arm's variant (None: no variant), each
        file read once. Raises ExperimentError naming the arm, the file and the reason."""
        loaded: dict[str, Policy] = {}
        for arm in experiment.arms:
            if arm.policy is None or arm.policy in loaded:
                continue
            if self._variants is None:
                raise ExperimentError(f"arm {arm.name!r}: policy variants are not configured")
            try:
                loaded[arm.policy] = self._variants.load(arm.policy)
            except PolicyFileError as exc:
                raise ExperimentError(f"arm {arm.name!r}: policy variant {exc}") from None
        return tuple(None if arm.policy is None else loaded[arm.policy] for arm in experiment.arms)

    def start(self, experiment: Experiment) -> Experiment:
        """Add a running experiment and write the file (nothing is written when one of its
        variants cannot be loaded: ExperimentError)."""
        experiments = self._on_disk(_stamp(self.path))
        if any(known.id == experiment.id for known in experiments):
            raise ExperimentConflict(f"an experiment {experiment.id!r} exists already")
        running = next((known for known in experiments if known.status == "running"), None)
        if running is not None:
            raise ExperimentConflict(
                f"experiment {running.id!r} is running: stop it first (one at a time)"
            )
        self._write((*experiments, experiment))
        return experiment

    def stop(self, experiment_id: str) -> Experiment:
        """Stop an experiment (idempotent: a stopped one is returned as it is). The file as it
        is on disk decides, so an experiment whose variant went bad can still be stopped."""
        experiments = self._on_disk(_stamp(self.path))
        found = [known for known in experiments if known.id == experiment_id]
        if not found:
            raise KeyError(experiment_id)
        if found[0].status == "stopped":
            return found[0]
        stopped = found[0].model_copy(update={"status": "stopped", "stopped_at": datetime.now(UTC)})
        self._write(tuple(stopped if known.id == experiment_id else known for known in experiments))
        return stopped

    def _on_disk(self, stamp: Stamp) -> tuple[Experiment, ...]:
        return () if stamp is None else tuple(read_experiments(self.path))

    def _variants_changed(self) -> bool:
        return any(_stamp(path) != seen for path, seen in self._variant_files.items())

    def _load(self, experiments: tuple[Experiment, ...]) -> _Loaded:
        """Compile the running experiment's split and variants (ExperimentError if one fails)."""
        running = next((e for e in experiments if e.status == "running"), None)
        if running is None:
            return _Loaded(experiments)
        files: dict[Path, Stamp] = {}
        if self._variants is not None:
            # Stamped before they are read: a file changed meanwhile is read again next poll.
            named = sorted({arm.policy for arm in running.arms if arm.policy is not None})
            files = {path: _stamp(path) for path in map(self._variants.path_of, named)}
        policies = self.variant_policies_of(running)
        return _Loaded(
            experiments,
            running,
            _Split(running, policies),
            tuple(dict.fromkeys(p for p in policies if p is not None)),
            files,
        )

    def _write(self, experiments: Sequence[Experiment]) -> None:
        loaded = self._load(tuple(experiments))  # before writing: a bad variant writes nothing
        document = _ExperimentsFile(experiments=list(experiments))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        staging.write_bytes(
            orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
        )
        os.replace(staging, self.path)
        self._set(loaded, _stamp(self.path))

    def _set(self, loaded: _Loaded, seen: Stamp) -> None:
        self._experiments = loaded.experiments
        self._running = loaded.running
        self._split = loaded.split
        self._variant_policies = loaded.variant_policies
        self._variant_files = loaded.variant_files
        self._seen = seen


def _stamp(path: Path) -> Stamp:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


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
        """Load the arms' policy variants and model versions, then write the experiment. Raises
        ExperimentError when a variant cannot be loaded or a version cannot be served (nothing
        is written) or ExperimentConflict."""
        self.registry.variant_policies_of(experiment)  # a bad variant loads no model version
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
