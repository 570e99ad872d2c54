"""What replicas share about training, behind one protocol: the training lease and refresh jobs.

The lease makes training one at a time across every process and replica on one store: it has an
expiry (a killed trainer's lease runs out, and the next trainer takes it) and a fencing token that
grows with every grant. The artifact store refuses an activation fenced below the newest token
(`ArtifactStore.raise_fence`), so a trainer that paused past its expiry and lost the lease to
another cannot activate what it trained. Times are the callers' clocks (time.time()): replicas
must keep them in step (NTP) to well within the lease's length.

Refresh jobs are records in the store, so any replica answers for a job another one started.

Implementations: `coordination_sqlite.py`, `coordination_mongo.py` (contract:
tests/contract/test_coordination.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

LEASE_NAME = "training"
FINISHED_JOBS_KEPT = 200


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    token: int  # the fencing token: larger than every token granted before it
    expires_at: float  # unix time


@runtime_checkable
class Coordination(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def acquire_lease(self, holder: str, ttl_seconds: float) -> Lease | None:
        """The training lease with a new token if nobody holds it (or theirs expired); else None."""

    async def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        """The lease extended, or None if it expired or another holder has it now (lost)."""

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up early (no effect if it is no longer ours)."""

    async def save_job(self, job: dict[str, Any]) -> None:
        """Insert or replace a refresh job record (keyed by its `job_id`); old finished ones are
        forgotten beyond the newest FINISHED_JOBS_KEPT."""

    async def job(self, job_id: str) -> dict[str, Any] | None: ...

    async def update_job_progress(self, job_id: str, done: int, total: int) -> None:
        """Set a recorded job's `progress` ({"epochs_done", "epochs_total"}): the training
        process reports it while it fits; nothing else of the record changes."""
