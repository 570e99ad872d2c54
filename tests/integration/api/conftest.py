"""A real app over a small demo world: SQLite store, trained model, local catalog. Built once."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.cli import seed_demo, train_once
from finverse_reco.settings import Settings

API_KEY = "test-admin-key"
WRITER_KEY = "test-writer-key"


@pytest.fixture(scope="package")
def settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("api")
    return Settings(
        store_url=f"sqlite:///{root}/interactions.db",
        model_dir=root / "models",
        catalog_path=root / "catalog.json",
        api_key=API_KEY,
        writer_api_keys=[WRITER_KEY],
        model_epochs=5,
        refresh_schedule="off",
        cors_origins=["https://app.finverse.example"],
    )


@pytest.fixture(scope="package")
def trained(settings: Settings) -> Settings:
    asyncio.run(seed_demo(settings, seed=7, users=300, products=200, events=15_000))
    assert asyncio.run(train_once(settings)) == 0
    return settings


@pytest.fixture(scope="package")
def admin_headers() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


@pytest.fixture(scope="package")
def writer_headers() -> dict[str, str]:
    return {"X-API-Key": WRITER_KEY}


@pytest.fixture(scope="package")
def client(trained: Settings):
    with TestClient(create_app(trained), raise_server_exceptions=False) as test_client:
        yield test_client
