"""Experiment arms serving a policy variant, through HTTP: a customer in the variant's arm never
gets what the variant forbids on any path (personalised, cold start, popular fallback, their
session, similar products for them), the other arm still does; responses, `explain` and the audit
trail name the joined version; a variant that tries to relax cannot show what the base forbids; a
stricter contact limit (2 impressions in 14 days against the base's 3 in 7) holds on both stores,
so the customer read brings the variant's longer window; bad variant names and files are refused
with 422 and nothing is written."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tomllib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mongo_stand_in import empty_store_url
from policy_reference import violations  # tests/support

from finverse_reco.api.app import create_app
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.policy import DEFAULT_RULES_FILE, load_rules
from finverse_reco.settings import Settings
from finverse_reco.store.migrate import migrate

from .test_audit_trail import stored_record
from .test_policy import known_of

RULES = tomllib.loads(DEFAULT_RULES_FILE.read_text())
BASE = load_rules().version
RECS = "/api/v1/recommendations"
EXPERIMENTS = "/api/v1/admin/experiments"
# Savings accounts for nobody: a category the base allows to everyone, even to a stranger.
NO_SAVINGS = """\
version = "no-savings.1"

[[rules]]
kind = "eligibility"
fail_closed_categories = ["savings_account"]

[rules.categories.savings_account]
min_age = 150
"""
# Tries to relax: no fail-closed category, no requirement, no contact limit, no diversity cap.
ANYTHING = """\
version = "anything.1"

[[rules]]
kind = "eligibility"
fail_closed_categories = []

[diversity]
max_per_category = 0
max_per_institution = 0
"""
TWO_IN_14 = """\
version = "two-in-14.1"

[[rules]]
kind = "contact_limit"
max_impressions = 2
days = 14
"""


def variants_dir(root: Path) -> Path:
    directory = root / "variants"
    directory.mkdir()
    for name, text in (
        ("no-savings.toml", NO_SAVINGS),
        ("anything.toml", ANYTHING),
        ("two-in-14.toml", TWO_IN_14),
        ("broken.toml", 'version = "b"\n[[rules]]\nkind = "nonsense"\n'),
        ("bad-toml.toml", "version = \n"),
    ):
        (directory / name).write_text(text)
    (root / "outside.toml").write_text('version = "outside"\n')
    return directory


def served_under(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "experiments_file": tmp_path / "experiments.json",
            "policy_variants_dir": variants_dir(tmp_path),
        }
    )


def categories_of(body: dict) -> set[str]:
    return {item["category"] for item in body["recommendations"]}


def test_each_arm_serves_its_policy_on_every_path(trained, admin_headers, writer_headers, tmp_path):
    settings = served_under(trained, tmp_path)
    catalog = {p.id: p for p in read_catalog_file(trained.catalog_path)}
    experiment = {
        "id": "savings-off",
        "arms": [
            {"name": "control", "share": 0.34},
            {"name": "strict", "share": 0.33, "policy": "no-savings.toml"},
            {"name": "loose", "share": 0.33, "policy": "anything.toml"},
        ],
    }
    version = {"control": BASE, "strict": f"{BASE}+no-savings.1", "loose": f"{BASE}+anything.1"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        started = client.post(EXPERIMENTS, json=experiment, headers=admin_headers)
        assert started.status_code == 201, started.text
        assert [arm["policy"] for arm in started.json()["arms"]] == [
            None,
            "no-savings.toml",
            "anything.toml",
        ]
        # Personalised, for every customer of the demo world.
        users: dict[str, list[str]] = defaultdict(list)
        shown: dict[str, set[str]] = defaultdict(set)
        for n in range(1, 301):
            user_id = f"user_{n:05d}"
            body = client.get(f"{RECS}/products/{user_id}?limit=10").json()
            arm = body["experiment"]["arm"]
            assert body["policy_version"] == version[arm]
            assert body["strategy"] == "personalized" and len(body["recommendations"]) == 10
            users[arm].append(user_id)
            shown[arm] |= categories_of(body)
            if arm == "loose":  # whatever the variant says, the base rules hold
                known = known_of(client, admin_headers, user_id)
                for item in body["recommendations"]:
                    now = datetime.now(UTC)
                    assert not violations(item["id"], catalog, RULES, known, now), item["id"]
        assert all(len(users[arm]) > 60 for arm in version), {a: len(u) for a, u in users.items()}
        assert "savings_account" not in shown["strict"]
        assert "savings_account" in shown["control"] and "savings_account" in shown["loose"]

        # New customers: cold start from demographics, and the popular fallback without them.
        for path, strategy in (
            ("?age_group=25-34&income_range=50k-75k", "features_cold_start"),
            ("", "popular"),
        ):
            savings_shown = defaultdict(bool)
            for n in range(40):
                body = client.get(f"{RECS}/products/newcomer_{n}{path}").json()
                arm = body["experiment"]["arm"]
                assert body["strategy"] == strategy and body["policy_version"] == version[arm]
                savings_shown[arm] |= "savings_account" in categories_of(body)
            assert not savings_shown["strict"] and savings_shown["control"], savings_shown

        # A session is served under its customer's arm, as are similar products for them; asked
        # for savings accounts only, the strict arm has none to give, the control arm has.
        strict_user, control_user = users["strict"][0], users["control"][0]
        savings = next(p for p in catalog.values() if p.category == "savings_account")
        for user_id, arm in ((strict_user, "strict"), (control_user, "control")):
            view = {
                "user_id": user_id,
                "session_id": f"sess_variant_{user_id}",
                "type": "product_view",
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {"productId": savings.id, "viewDuration": 40},
            }
            posted = client.post("/api/v1/interactions", json=view, headers=writer_headers)
            assert posted.status_code == 202
            for path in (
                f"session/sess_variant_{user_id}?limit=20",
                f"similar-products/{savings.id}?user_id={user_id}&limit=20",
            ):
                body = client.get(f"{RECS}/{path}").json()
                assert body["experiment"]["arm"] == arm and body["policy_version"] == version[arm]
                assert body["strategy"] in ("session", "similar")
                assert "savings_account" not in categories_of(body) or arm == "control"
                only = client.get(f"{RECS}/{path}&category=savings_account").json()
                assert categories_of(only) == (set() if arm == "strict" else {"savings_account"})

        # explain names the joined version and counts the variant's block; so does the audit.
        explained = client.get(
            f"{RECS}/products/{strict_user}?limit=10&explain=true", headers=admin_headers
        ).json()
        assert explained["explain"]["policy_version"] == version["strict"]
        savings_count = sum(p.category == "savings_account" for p in catalog.values())
        assert explained["explain"]["blocked_counts"]["eligibility"] >= savings_count
        record = stored_record(client, admin_headers, explained["recommendation_id"])
        assert record["policy_version"] == version["strict"]

        # Stopped: the base policy for everyone, from the next request on.
        assert client.post(f"{EXPERIMENTS}/savings-off/stop", headers=admin_headers).is_success
        after = client.get(f"{RECS}/products/{strict_user}?limit=10").json()
        assert after["experiment"] is None and after["policy_version"] == BASE


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ("../outside.toml", "no path"),
        ("../outside", "no path"),
        ("/etc/passwd", "no path"),
        ("variants/no-savings.toml", "no path"),
        ("missing.toml", r"missing\.toml.*cannot be read"),
        ("broken.toml", r"broken\.toml, line 3: rules\.0"),
        ("bad-toml.toml", r"bad-toml\.toml, line 1: Invalid value"),
    ],
)
def test_bad_variants_are_refused_and_nothing_is_written(
    trained, admin_headers, tmp_path, policy, words
):
    settings = served_under(trained, tmp_path)
    arms = [{"name": "control", "share": 0.5}, {"name": "v", "share": 0.5, "policy": policy}]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        refused = client.post(EXPERIMENTS, json={"id": "bad", "arms": arms}, headers=admin_headers)
        assert refused.status_code == 422, refused.text
        assert re.search(words, refused.text), refused.text
        assert not (tmp_path / "experiments.json").exists()
        assert client.get(EXPERIMENTS, headers=admin_headers).json()["running"] is None


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def store_url(request, tmp_path) -> str:
    """An empty store of each kind (the trained model and catalog are the package's)."""
    url = empty_store_url(request, tmp_path, "finverse_variants")
    assert asyncio.run(migrate(url)).ok
    return url


def impressions(user_id: str, product_id: str, *days_ago: float) -> list[dict]:
    return [
        {
            "user_id": user_id,
            "type": "impression",
            "timestamp": (datetime.now(UTC) - timedelta(days=days)).isoformat(),
            "recommendation_id": f"rec-{user_id}-{n}-{days}",
            "data": {"productIDs": [product_id], "channel": "app_home"},
        }
        for n, days in enumerate(days_ago)
    ]


def test_a_stricter_contact_limit_holds_in_its_arm_only(
    trained, store_url, admin_headers, writer_headers, tmp_path
):
    settings = served_under(trained, tmp_path).model_copy(update={"store_url": store_url})
    experiment = {
        "id": "fewer-contacts",
        "arms": [
            {"name": "control", "share": 0.5},
            {"name": "fewer", "share": 0.5, "policy": "two-in-14.toml"},
        ],
    }
    url = f"{RECS}/products/{{}}?limit=5&channel=app_home"
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.post(EXPERIMENTS, json=experiment, headers=admin_headers).status_code == 201
        # Customers the store has never seen (popular lists, stable whatever their impressions).
        first: dict[str, tuple[str, str]] = {}
        for n in range(40):
            body = client.get(url.format(f"contacted_{n}")).json()
            first.setdefault(body["experiment"]["arm"], (f"contacted_{n}", body))
            if len(first) == 2:
                break
        (fewer, fewer_list), (control, control_list) = first["fewer"], first["control"]
        assert fewer_list["policy_version"] == f"{BASE}+two-in-14.1"
        assert control_list["policy_version"] == BASE
        top = fewer_list["recommendations"][0]["id"]
        assert control_list["recommendations"][0]["id"] == top  # the same popular list

        # Two impressions each: 10 days ago (outside the base's 7 days) and yesterday.
        for user_id in (fewer, control):
            events = impressions(user_id, top, 10, 1)
            posted = client.post("/api/v1/interactions", json=events, headers=writer_headers)
            assert posted.status_code == 202, posted.text
        after_fewer = client.get(url.format(fewer) + "&explain=true", headers=admin_headers).json()
        assert top not in [item["id"] for item in after_fewer["recommendations"]]
        assert after_fewer["explain"]["excluded"]["contact_limit"] == [top]
        assert len(after_fewer["recommendations"]) == 5
        after_control = client.get(url.format(control)).json()
        assert top in [item["id"] for item in after_control["recommendations"]]

        # The base's own limit still holds in the control arm: 3 in 7 days.
        posted = client.post(
            "/api/v1/interactions", json=impressions(control, top, 0.5, 0.2), headers=writer_headers
        )
        assert posted.status_code == 202
        again = client.get(url.format(control)).json()
        assert top not in [item["id"] for item in again["recommendations"]]


def test_at_start_up_a_bad_variant_runs_no_experiment_and_says_why(trained, tmp_path, caplog):
    """As with a bad experiments file: the replica starts, serves the base policy to everyone,
    and logs the file and the reason (docs/FEEDBACK.md)."""
    settings = served_under(trained, tmp_path)
    arms = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "policy": "missing.toml"}]
    document = {"id": "e", "salt": "e", "started_at": "2026-12-01T00:00:00Z", "arms": arms}
    settings.experiments_file.write_text(json.dumps({"experiments": [document]}))
    logged = caplog.at_level(logging.ERROR, logger="finverse_reco.service.experiments")
    with logged, TestClient(create_app(settings), raise_server_exceptions=False) as client:
        bodies = [client.get(f"{RECS}/products/user_{n:05d}").json() for n in range(1, 21)]
    assert all(b["experiment"] is None and b["policy_version"] == BASE for b in bodies)
    assert re.search(
        r"arm 'b': policy variant rules file .*missing\.toml.*cannot be read", caplog.text
    )
