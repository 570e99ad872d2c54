"""The feedback loop, scripted end to end: an experiment with two arms on two model versions served
side by side, known impressions, clicks, applications and dismissals published to the real
RabbitMQ and consumed into the store, then exactly the expected counts and rates from
`GET /api/v1/stats/online` and `/metrics`."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial

import aio_pika
import pytest
from fastapi.testclient import TestClient

from finverse_reco import compose
from finverse_reco.api.app import create_app
from finverse_reco.cli import seed_demo, train_once
from finverse_reco.events import parse_event
from finverse_reco.ingest import InteractionPublisher, Topology
from finverse_reco.ingest.topology import delete_topology
from finverse_reco.model.artifacts import list_versions, load_version
from finverse_reco.settings import Settings

pytestmark = pytest.mark.rabbitmq
ADMIN = {"X-API-Key": "scenario-admin-key"}
SHOWN = 3  # items of each list the customer saw
CUSTOMERS = 40


@pytest.fixture(scope="module")
def scenario_settings(tmp_path_factory, rabbitmq_url):
    root = tmp_path_factory.mktemp("feedback")
    settings = Settings(
        store_url=f"sqlite:///{root}/interactions.db",
        model_dir=root / "models",
        catalog_path=root / "catalog.json",
        experiments_file=root / "experiments.json",
        api_key=ADMIN["X-API-Key"],
        model_epochs=2,
        refresh_schedule="off",
        rabbitmq_url=rabbitmq_url,
        rabbitmq_name_prefix=f"t{uuid.uuid4().hex[:8]}.",
        ingest_batch_timeout_ms=50,
        online_metrics_hours=24 * 7,
        online_metrics_refresh_seconds=0,
    )
    asyncio.run(seed_demo(settings, seed=5, users=120, products=60, events=4_000))
    assert asyncio.run(train_once(settings)) == 0
    time.sleep(1.1)  # version names carry the second they were made
    asyncio.run(train_once(settings.model_copy(update={"model_epochs": 3})))
    yield settings

    async def cleanup() -> None:
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await delete_topology(
                await connection.channel(), Topology.of(compose.ingest_config(settings))
            )

    asyncio.run(cleanup())


def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def feedback_event(user, rec, base, kind, product=None, minutes=0.0, **extra):
    raw = {
        "user_id": user,
        "type": kind,
        "timestamp": (base + timedelta(minutes=minutes)).isoformat(),
        "data": {**({"productId": product} if product else {}), **extra},
    }
    return parse_event(raw | ({"recommendation_id": rec} if kind == "impression" else {}))


def scripted_feedback(served: dict[str, dict], base: datetime):
    """Every customer saw the first SHOWN items of their list at `base`; customer n clicks item 0
    if n is even, applies for it if n % 4 == 0, dismisses item 2 if n % 3 == 0, clicks item 1 a
    day and an hour later if n % 5 == 0 (outside the 24 h window), and clicks a product they were
    never shown. Returns the events and the expected counts per arm, worked out here by hand."""
    events, expected = [], defaultdict(lambda: defaultdict(int))
    for n, (user, body) in enumerate(sorted(served.items())):
        arm = body["experiment"]["arm"]
        items = [r["id"] for r in body["recommendations"][:SHOWN]]
        rec = f"rec-{user}"

        event = partial(feedback_event, user, rec, base)

        events.append(
            event(
                "impression",
                productIDs=items,
                channel="app_home",
                arm=arm,
                modelVersion=body["model_version"],
                strategy=body["strategy"],
            )
        )
        expected[arm]["impressions"] += SHOWN
        if n % 2 == 0:
            events.append(event("product_click", items[0], minutes=3))
            expected[arm]["clicks"] += 1
        if n % 4 == 0:
            events.append(event("application_submit", items[0], minutes=9))
            expected[arm]["applications"] += 1
        if n % 3 == 0:
            events.append(event("dismiss", items[2], minutes=1))
            expected[arm]["dismissals"] += 1
        if n % 5 == 0:
            events.append(event("product_click", items[1], minutes=25 * 60))
        never_shown = next(r["id"] for r in body["recommendations"][SHOWN:])
        events.append(event("product_click", never_shown, minutes=4))
    return events, expected


async def stored(settings: Settings) -> int:
    store = compose.store(settings, "worker")
    await store.open()
    try:
        return await store.count()
    finally:
        await store.close()


def metric(text: str, measure: str, dimension: str, group: str) -> float:
    pattern = rf'^finverse_online_{measure}{{dimension="{dimension}",group="{group}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{measure} {dimension}={group} not in /metrics"
    return float(found[1])


def test_two_arms_on_two_model_versions_give_the_expected_online_metrics(scenario_settings):
    versions = list_versions(scenario_settings.model_dir)
    assert len(versions) == 2
    old, new = sorted(versions)
    trained_users = load_version(scenario_settings.model_dir, new).users.ids[:CUSTOMERS]
    experiment = {
        "id": "ranker-v2",
        "salt": "scenario",
        "arms": [
            {"name": "control", "share": 0.5, "model_version": old},
            {"name": "treatment", "share": 0.5, "model_version": new},
        ],
    }
    with TestClient(create_app(scenario_settings), raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/ready").json()["checks"].get("broker") == "ok")
        started = client.post("/api/v1/admin/experiments", json=experiment, headers=ADMIN)
        assert started.status_code == 201, started.text

        served = {}
        for user in trained_users:
            body = client.get(f"/api/v1/recommendations/products/{user}?limit=5").json()
            arm = body["experiment"]["arm"]
            # Each arm is served by its own model version, side by side in one process.
            assert body["model_version"] == (old if arm == "control" else new)
            served[user] = body
        arms = {body["experiment"]["arm"] for body in served.values()}
        assert arms == {"control", "treatment"}

        base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
        events, expected = scripted_feedback(served, base)

        async def publish() -> int:
            config = compose.ingest_config(scenario_settings)
            async with InteractionPublisher(config) as publisher:
                return await publisher.publish(events, source="app")

        stored_before = asyncio.run(stored(scenario_settings))
        assert asyncio.run(publish()) == len(events)
        wait_for(lambda: asyncio.run(stored(scenario_settings)) == stored_before + len(events))

        period = {
            "since": (base - timedelta(hours=1)).isoformat(),
            "until": (base + timedelta(hours=1)).isoformat(),
        }
        report = client.get(
            "/api/v1/stats/online", params={**period, "by": "arm"}, headers=ADMIN
        ).json()
        by_arm = {row["group"]["arm"]: row for row in report["groups"]}
        assert set(by_arm) == arms
        for arm, counts in expected.items():
            row = by_arm[arm]
            for measure in ("impressions", "clicks", "applications", "dismissals"):
                assert row[measure] == counts[measure], (arm, measure)
            assert row["click_through_rate"] == pytest.approx(
                counts["clicks"] / counts["impressions"]
            )
            assert row["conversion_rate"] == pytest.approx(
                counts["applications"] / counts["impressions"]
            )
        by_version = client.get(
            "/api/v1/stats/online", params={**period, "by": "model_version"}, headers=ADMIN
        ).json()
        assert {r["group"]["model_version"]: r["clicks"] for r in by_version["groups"]} == {
            old: expected["control"]["clicks"],
            new: expected["treatment"]["clicks"],
        }

        text = client.get("/metrics").text
        for arm, counts in expected.items():
            for measure in ("impressions", "clicks", "applications", "dismissals"):
                assert metric(text, measure, "arm", arm) == counts[measure]
            assert metric(text, "click_through_rate", "arm", arm) == pytest.approx(
                counts["clicks"] / counts["impressions"]
            )
        assert (
            metric(text, "impressions", "model_version", new)
            == (expected["treatment"]["impressions"])
        )

        # Stopping is one call: the next answer names no arm and comes from CURRENT.
        stopped = client.post("/api/v1/admin/experiments/ranker-v2/stop", headers=ADMIN)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        after = client.get(f"/api/v1/recommendations/products/{trained_users[0]}").json()
        assert after["experiment"] is None


def test_experiment_and_stats_requests_are_checked(scenario_settings, tmp_path):
    settings = scenario_settings.model_copy(
        update={"experiments_file": tmp_path / "experiments.json", "rabbitmq_url": None}
    )
    versions = sorted(list_versions(settings.model_dir))
    arm = {"name": "only", "share": 1.0}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        url = "/api/v1/admin/experiments"
        assert client.post(url, json={"id": "x", "arms": [arm]}).status_code == 401
        missing = {"id": "x", "arms": [arm | {"model_version": "20200101T000000Z-000000"}]}
        refused = client.post(url, json=missing, headers=ADMIN)
        assert refused.status_code == 422 and "cannot be served" in refused.text
        uneven = {"id": "x", "arms": [arm | {"share": 0.4}]}
        assert client.post(url, json=uneven, headers=ADMIN).status_code == 422
        assert not (tmp_path / "experiments.json").exists()  # nothing written for a refusal

        baseline = {"id": "baseline", "arms": [arm | {"strategy": "popular"}]}
        assert client.post(url, json=baseline, headers=ADMIN).status_code == 201
        second = {"id": "other", "arms": [arm | {"model_version": versions[0]}]}
        assert client.post(url, json=second, headers=ADMIN).status_code == 409
        known = load_version(settings.model_dir, versions[-1]).users.ids[0]
        body = client.get(f"/api/v1/recommendations/products/{known}").json()
        assert body["experiment"] == {"id": "baseline", "arm": "only"}
        assert body["strategy"] == "popular"  # the arm's strategy, for a customer the model knows
        listed = client.get(url, headers=ADMIN).json()
        assert listed["running"] == "baseline"
        assert client.post(f"{url}/nope/stop", headers=ADMIN).status_code == 404

        stats = "/api/v1/stats/online"
        assert client.get(stats).status_code == 401
        assert client.get(stats, params={"by": "colour"}, headers=ADMIN).status_code == 422
        backwards = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        assert client.get(stats, params=backwards, headers=ADMIN).status_code == 422
