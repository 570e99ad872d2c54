"""The coordination contract (training lease, refresh jobs) against SQLite and the MongoDB stand-in."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from mongo_stand_in import STORE_OPTIONS

from finverse_reco.store.coordination import FINISHED_JOBS_KEPT, Coordination
from finverse_reco.store.coordination_mongo import MongoCoordination
from finverse_reco.store.coordination_sqlite import SQLiteCoordination


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "coordination.db")
    url = f"{request.getfixturevalue('mongo_url')}/finverse_coord_{uuid.uuid4().hex[:12]}"
    return "mongo", url


def build(place: tuple[str, str]) -> Coordination:
    kind, where = place
    return (
        SQLiteCoordination(where)
        if kind == "sqlite"
        else MongoCoordination.from_url(where, **STORE_OPTIONS)
    )


@pytest.fixture
async def replicas(place):
    """Two processes' views of one store."""
    opened = [build(place), build(place)]
    for coordination in opened:
        await coordination.open()
    yield opened
    for coordination in opened:
        await coordination.close()


async def test_one_holder_at_a_time_and_every_grant_a_larger_token(replicas):
    a, b = replicas
    first = await a.acquire_lease("a", ttl_seconds=30)
    assert first is not None and first.holder == "a"
    assert await b.acquire_lease("b", ttl_seconds=30) is None
    await a.release_lease(first)
    second = await b.acquire_lease("b", ttl_seconds=30)
    assert second is not None and second.token > first.token


async def test_many_acquiring_at_once_exactly_one_wins(replicas):
    a, b = replicas
    grants = await asyncio.gather(
        *(store.acquire_lease(f"trainer-{n}", ttl_seconds=30) for n in range(5) for store in (a, b))
    )
    assert len([g for g in grants if g is not None]) == 1, grants


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(replicas):
    a, b = replicas
    stale = await a.acquire_lease("a", ttl_seconds=0.3)
    assert stale is not None
    assert await b.acquire_lease("b", ttl_seconds=30) is None
    await asyncio.sleep(0.4)  # "a" paused (or was killed) past its expiry
    fresh = await b.acquire_lease("b", ttl_seconds=30)
    assert fresh is not None and fresh.token > stale.token
    assert await a.renew_lease(stale, ttl_seconds=30) is None
    await a.release_lease(stale)  # releasing what is no longer ours changes nothing
    assert await a.acquire_lease("a", ttl_seconds=30) is None


async def test_a_renewed_lease_outlives_its_first_expiry(replicas):
    a, b = replicas
    lease = await a.acquire_lease("a", ttl_seconds=0.5)
    for _ in range(3):
        await asyncio.sleep(0.25)
        lease = await a.renew_lease(lease, ttl_seconds=0.5)
        assert lease is not None
    assert await b.acquire_lease("b", ttl_seconds=30) is None


def a_job(n: int, state: str = "succeeded") -> dict:
    return {
        "job_id": f"{n:032x}",
        "state": state,
        "trigger": "api",
        "started_at": f"2026-12-03T12:{n // 60:02d}:{n % 60:02d}+00:00",
        "finished_at": None,
        "detail": "",
        "model_version": None,
        "progress": None,
    }


async def test_a_job_saved_by_one_replica_is_read_by_the_other(replicas):
    a, b = replicas
    running = a_job(1, "running")
    await a.save_job(running)
    assert await b.job(running["job_id"]) == running
    done = {**running, "state": "succeeded", "detail": "model v activated"}
    await a.save_job(done)
    assert await b.job(running["job_id"]) == done
    assert await b.job("f" * 32) is None


async def test_progress_updates_only_the_progress_of_a_recorded_job(replicas):
    a, b = replicas
    running = a_job(2, "running")
    await a.save_job(running)
    await b.update_job_progress(running["job_id"], 3, 20)
    await b.update_job_progress(running["job_id"], 7, 20)
    assert await a.job(running["job_id"]) == {
        **running,
        "progress": {"epochs_done": 7, "epochs_total": 20},
    }
    await b.update_job_progress("e" * 32, 1, 2)  # no such job: nothing is created
    assert await a.job("e" * 32) is None


@pytest.mark.slow
async def test_old_finished_jobs_are_forgotten_running_ones_never(replicas):
    a, _ = replicas
    await a.save_job(a_job(0, "running"))
    for n in range(1, FINISHED_JOBS_KEPT + 3):
        await a.save_job(a_job(n))
    assert await a.job(a_job(0)["job_id"]) is not None
    assert await a.job(a_job(1)["job_id"]) is None
    assert await a.job(a_job(3)["job_id"]) is not None
