"""The MongoDB store goes away under a running service: it degrades, never 500s, and recovers alone."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from mongo_stand_in import started_stand_in

from finverse_reco.api.app import create_app
from finverse_reco.store.migrate import migrate

pytestmark = pytest.mark.mongo


@pytest.fixture
def stand_in(tmp_path):
    server = started_stand_in(tmp_path / "mongo")
    yield server
    server.stop()


def view(user: str, session: str, product: str, minute: int) -> dict:
    return {
        "user_id": user,
        "session_id": session,
        "type": "product_view",
        "timestamp": f"2026-11-27T09:{minute:02d}:00Z",
        "data": {"productId": product, "viewDuration": 30},
    }


def test_reads_fall_back_while_mongo_is_down_and_recover(trained, stand_in):
    settings = trained.model_copy(
        update={"store_url": f"{stand_in.url}/finverse_outage", "store_timeout_ms": 500}
    )
    assert asyncio.run(migrate(settings.store_url)).ok
    writer = {"X-API-Key": settings.writer_api_keys[0]}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        events = [view("mongo_user", "sess_mongo", f"prod_00{i}", i) for i in (10, 11, 12)]
        assert client.post("/api/v1/interactions", json=events, headers=writer).status_code == 202
        before = client.get("/api/v1/recommendations/products/mongo_user").json()
        assert (before["strategy"], before["degraded"]) == ("personalized", False)
        assert client.get("/ready").status_code == 200

        stand_in.stop()

        new_user = client.get("/api/v1/recommendations/products/mongo_user")
        assert new_user.status_code == 200
        assert (new_user.json()["strategy"], new_user.json()["degraded"]) == ("popular", True)
        # A known customer's profile cannot be read: neither their consent (so they are not
        # personalised: fail closed, docs/ACCOUNTABILITY.md) nor their attributes (the policy
        # treats them as unknown: credit products fail closed). An answer made with less: degraded.
        known = client.get("/api/v1/recommendations/products/user_00001").json()
        assert (known["strategy"], known["degraded"]) == ("popular", True)
        assert known["recommendations"]
        assert not {item["category"] for item in known["recommendations"]} & {
            "credit_card",
            "personal_loan",
            "mortgage",
        }
        session = client.get("/api/v1/recommendations/session/sess_mongo")
        assert session.status_code == 200 and session.json()["degraded"] is True
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"].startswith("unavailable")
        refused = client.post(
            "/api/v1/interactions", json=[view("x", "s", "prod_0001", 1)], headers=writer
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "unavailable"

        stand_in.start()  # same port; the driver reconnects by itself

        deadline = time.monotonic() + 20
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").json()
            time.sleep(0.2)
        assert client.post("/api/v1/interactions", json=events, headers=writer).status_code == 202
        after = client.get("/api/v1/recommendations/products/mongo_user").json()
        assert (after["strategy"], after["degraded"]) == ("personalized", False)
