"""FINVERSE_REFRESH_SCHEDULE drives retraining inside `serve`: with a two-second interval a
scheduled job runs, nobody asks for it, and the new version gets served."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from finverse_reco.model.artifacts import current_version, read_manifest
from finverse_reco.schedule import seconds_until_next
from finverse_reco.settings import Settings

from .harness import RECS, ServeProcess, serving_version, wait_until


def trainings(url: str, outcome: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "finverse_training_seconds_count"
        and sample.labels.get("outcome") == outcome
    )


@pytest.mark.slow
def test_an_interval_schedule_retrains_inside_serve_and_the_new_version_is_served(world, tmp_path):
    old = current_version(world.model_dir)
    scheduled = world.model_copy(update={"refresh_schedule": "2s"})
    with ServeProcess(scheduled, tmp_path / "serve.log") as server:
        assert trainings(server.url, "succeeded") == 0
        new = wait_until(
            lambda: (v := serving_version(server.url)) != old and v,
            within=60,
            every=0.1,
            what="a scheduled training is served",
        )
        body = httpx.get(f"{server.url}{RECS}/products/user_00002", timeout=5).json()
        assert body["model_version"] != old
        # The job is done once the child exits, a moment after it activated the version.
        wait_until(
            lambda: trainings(server.url, "succeeded") >= 1,
            within=30,
            every=0.1,
            what="serve records the scheduled training",
        )
    assert read_manifest(world.model_dir, new)["activated"] is True


def test_schedules_parse_as_intervals_or_cron():
    assert seconds_until_next("2s") == 2.0
    assert seconds_until_next("15m") == 900.0
    assert seconds_until_next("off") is None
    at = datetime(2026, 11, 27, 10, 14, 30, tzinfo=UTC)
    assert seconds_until_next("*/15 * * * *", now=at) == 30.0
    assert seconds_until_next("@hourly", now=at) == 45 * 60 + 30


@pytest.mark.parametrize("schedule", ["2x", "every minute", "0s", "61 * * * *"])
def test_a_bad_schedule_fails_at_start_naming_the_setting(schedule):
    with pytest.raises(ValueError, match="refresh_schedule"):
        Settings(_env_file=None, refresh_schedule=schedule)
