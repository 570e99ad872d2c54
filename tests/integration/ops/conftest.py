"""An app over an empty SQLite store and no model (enough for the middlewares, logs and security),
and the trained demo world of the API tests for what needs a model (built once for this package)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from finverse_reco.api.app import create_app
from finverse_reco.settings import Settings

from ..api.conftest import settings, trained  # noqa: F401 (fixtures, reused)

OPS_API_KEY = "ops-test-admin-key"
OPS_WRITER_KEY = "ops-test-writer-key"
ADMIN_RATE = 3  # per minute, per client address
ADMIN_READ_RATE = 6  # job status lookups, per minute, per client address
MAX_BODY_BYTES = 4096
ALLOWED_ORIGIN = "https://app.finverse.example"


@pytest.fixture
def bare_settings(tmp_path) -> Settings:
    return Settings(
        _env_file=None,
        store_url=f"sqlite:///{tmp_path}/interactions.db",
        model_dir=tmp_path / "models",
        catalog_path=tmp_path / "catalog.json",
        api_key=OPS_API_KEY,
        writer_api_keys=[OPS_WRITER_KEY],
        accept_unknown_products=True,  # no catalog here
        refresh_schedule="off",
        admin_rate_limit=f"{ADMIN_RATE}/minute",
        admin_read_rate_limit=f"{ADMIN_READ_RATE}/minute",
        max_body_bytes=MAX_BODY_BYTES,
        cors_origins=[ALLOWED_ORIGIN],
    )


@pytest.fixture
def bare_client(bare_settings: Settings):
    with TestClient(create_app(bare_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def restore_logging():
    """Tests that configure the root logger put it back as they found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
