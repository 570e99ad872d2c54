"""Two `serve` processes on one model directory: a refresh through one, and both serve the new
version within the poll interval of CURRENT changing."""

from __future__ import annotations

import time

import httpx
import pytest

from finverse_reco.model.artifacts import CURRENT_FILE, current_version, list_versions

from .conftest import POLL_SECONDS
from .harness import ADMIN, RECS, ServeProcess, serving_version, wait_for_job, wait_until

# Each replica polls every POLL_SECONDS; a busy two-core machine may delay a poll or a load by a
# little, never by several intervals.
SWAP_SLACK_SECONDS = 1.5


@pytest.mark.slow
def test_a_refresh_through_one_replica_reaches_both(world, tmp_path):
    old = current_version(world.model_dir)
    with (
        ServeProcess(world, tmp_path / "a.log") as a,
        ServeProcess(world, tmp_path / "b.log") as b,
    ):
        assert serving_version(a.url) == serving_version(b.url) == old
        job = httpx.post(f"{a.url}{RECS}/refresh-model", headers=ADMIN, timeout=5).json()

        switched: dict[str, float] = {}

        def both_switched() -> bool:
            for name, url in (("a", a.url), ("b", b.url)):
                if name not in switched and serving_version(url) not in (old, None):
                    switched[name] = time.time()
            return len(switched) == 2

        wait_until(both_switched, within=60, every=0.05, what="both replicas serve a new version")
        new = current_version(world.model_dir)
        activated_at = (world.model_dir / CURRENT_FILE).stat().st_mtime
        for url in (a.url, b.url):
            assert serving_version(url) == new
            body = httpx.get(f"{url}{RECS}/products/user_00001", timeout=5).json()
            assert body["model_version"] == new
        assert wait_for_job(a.url, job["job_id"])["state"] == "succeeded"

    assert new != old
    assert list_versions(world.model_dir) == sorted([old, new]), "one refresh, one training"
    for name, at in switched.items():
        lag = at - activated_at
        assert lag <= POLL_SECONDS + SWAP_SLACK_SECONDS, f"replica {name} swapped {lag:.2f}s late"
