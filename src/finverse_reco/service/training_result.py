"""What a `finverse-reco train` process tells the refresh job that started it: a JSON file, written
whole (temporary file, then rename) just before the process exits, and validated when read.

The exit code stays the process's contract with shells and schedulers (0 activated, 3 kept
inactive, 75 busy, 1 failed); this file is the contract with `RefreshJobs`, which needs the version,
the reason and the metrics, not a line of log text.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EXIT_ACTIVATED = 0
EXIT_FAILED = 1
EXIT_NOT_ACTIVATED = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: another process holds the training lock or lease


class TrainingOutcome(StrEnum):
    ACTIVATED = "activated"
    NOT_ACTIVATED = "not_activated"
    BUSY = "busy"
    FAILED = "failed"


EXIT_CODES = {
    TrainingOutcome.ACTIVATED: EXIT_ACTIVATED,
    TrainingOutcome.NOT_ACTIVATED: EXIT_NOT_ACTIVATED,
    TrainingOutcome.BUSY: EXIT_BUSY,
    TrainingOutcome.FAILED: EXIT_FAILED,
}


class TrainingResultError(ValueError):
    """The result file is missing or not a valid result."""


class TrainingResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: TrainingOutcome
    reason: str = Field(max_length=2000)
    version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def write(self, path: Path) -> None:
        pending = path.with_name(f".{path.name}.pending")
        pending.write_bytes(self.model_dump_json().encode())
        os.replace(pending, path)

    @classmethod
    def read(cls, path: Path) -> TrainingResult:
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise TrainingResultError("the training process wrote no result") from None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "result"
            raise TrainingResultError(
                f"invalid training result ({where}: {first['msg']})"
            ) from None
