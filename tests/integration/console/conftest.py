"""The console's world: a small trained demo world with an evaluation report, served by a real
`finverse-reco serve` process, and Debian's Chromium driven by Playwright.

Screenshots go to a temporary directory, or to `FINVERSE_CONSOLE_SCREENSHOTS` when it is set
(`make console-screenshots` sets it to docs/console/ to refresh the committed ones).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.evaluation.datasets import demo_dataset
from finverse_reco.evaluation.harness import evaluate, write_json
from finverse_reco.settings import Settings

from ..lifecycle.harness import API_KEY, ServeProcess, prepare_world, world_settings

WORLD = {
    "model_epochs": 5,
    "model_threads": 1,
    "model_poll_seconds": 0.5,
    # Every retrain here must activate (the guardrail has its own tests).
    "model_max_precision_drop": 1.0,
}
SIZE = {"users": 300, "products": 200, "events": 15_000}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def console_settings(root: Path) -> Settings:
    return world_settings(root, evaluation_dir=root / "evaluations", **WORLD)


@pytest.fixture(scope="package")
def template_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("console-template")
    prepare_world(console_settings(root), seed=7, **SIZE)
    # A real evaluation report of the same world, as `evaluate --json` writes it.
    report = evaluate(
        demo_dataset(
            7, n_users=SIZE["users"], n_products=SIZE["products"], n_events=SIZE["events"]
        ),
        "holdout",
        42,
        k=10,
        models=["popularity", "lightfm-cf"],  # the hybrid tunes itself: a minute here
    )
    write_json(report, root / "evaluations" / "demo-holdout.json")
    return root


@pytest.fixture
def world(template_world: Path, tmp_path: Path) -> Settings:
    """Settings over a private copy of the trained world."""
    root = tmp_path / "world"
    shutil.copytree(template_world, root)
    return console_settings(root)


@pytest.fixture
def client(world: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(world), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(template_world: Path, tmp_path_factory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("console-server") / "world"
    shutil.copytree(template_world, root)
    with ServeProcess(console_settings(root), root.parent / "serve.log") as process:
        yield process


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("FINVERSE_CONSOLE_SCREENSHOTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


ADMIN = {"X-API-Key": API_KEY}
