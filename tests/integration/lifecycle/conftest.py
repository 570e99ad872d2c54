"""A small trained demo world, built once; every test gets its own copy (store, catalog, models).

Retrains in these tests must activate (the guardrail has its own tests), so the precision drop the
guardrail tolerates is set to 1.0; epochs and threads are small to keep each training to seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finverse_reco.settings import Settings

from .harness import prepare_world, world_settings

POLL_SECONDS = 0.5
WORLD = {
    "model_epochs": 5,
    "model_threads": 1,
    "model_poll_seconds": POLL_SECONDS,
    "model_max_precision_drop": 1.0,
}
USERS = 300


@pytest.fixture(scope="package")
def template_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle-template")
    prepare_world(world_settings(root, **WORLD), seed=11, users=USERS, products=200, events=15_000)
    return root


@pytest.fixture
def world(template_world: Path, tmp_path: Path) -> Settings:
    """Settings over a private copy of the trained world."""
    root = tmp_path / "world"
    shutil.copytree(template_world, root)
    return world_settings(root, **WORLD)


@pytest.fixture
def user_ids() -> list[str]:
    return [f"user_{n:05d}" for n in range(1, USERS + 1)]
