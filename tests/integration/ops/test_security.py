"""Body-size limit, admin rate limit, request ids, CORS and the production start-up guards."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from finverse_reco.api.app import create_app
from finverse_reco.settings import Settings, SettingsError, load_settings

from .conftest import (
    ADMIN_RATE,
    ADMIN_READ_RATE,
    ALLOWED_ORIGIN,
    MAX_BODY_BYTES,
    OPS_API_KEY,
    OPS_WRITER_KEY,
)

REFRESH = "/api/v1/recommendations/refresh-model"
ADMIN = {"X-API-Key": OPS_API_KEY}
INTERACTIONS = "/api/v1/interactions"
WRITER_JSON = {"content-type": "application/json", "X-API-Key": OPS_WRITER_KEY}


def an_event(padding: int = 0) -> dict:
    return {
        "user_id": "user_1",
        "session_id": "sess_1",
        "type": "product_view",
        "timestamp": "2026-11-27T12:00:00Z",
        "data": {"productId": "prod_0001", "viewDuration": 12.0, "category": "x" * padding},
    }


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


# --- body size --------------------------------------------------------------------------------------


def test_a_body_within_the_limit_reaches_the_endpoint(bare_client):
    body = orjson.dumps(an_event())
    assert len(body) < MAX_BODY_BYTES
    response = bare_client.post(INTERACTIONS, content=body, headers=WRITER_JSON)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_a_declared_oversize_body_is_refused_with_413(bare_client):
    body = orjson.dumps([an_event(padding=MAX_BODY_BYTES)])
    response = bare_client.post(INTERACTIONS, content=body, headers=WRITER_JSON)
    error = assert_error(response, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in error["message"]


def test_a_streamed_body_without_length_is_cut_at_the_limit(bare_client):
    def chunks():
        for _ in range(64):  # 64 KiB, sixteen times the limit
            yield b" " * 1024

    response = bare_client.post(INTERACTIONS, content=chunks(), headers=WRITER_JSON)
    assert_error(response, 413, "payload_too_large")
    assert "content-length" not in response.request.headers  # chunked: only the stream check helps


def test_the_limit_applies_to_every_path(bare_client):
    response = bare_client.post(REFRESH, content=b"x" * (MAX_BODY_BYTES + 1))
    assert_error(response, 413, "payload_too_large")


# --- admin rate limit ------------------------------------------------------------------------------


def test_admin_requests_past_the_rate_get_429_with_retry_after(bare_client):
    for _ in range(ADMIN_RATE):
        assert_error(bare_client.post(REFRESH, headers={"X-API-Key": "guess"}), 401, "unauthorized")
    limited = bare_client.post(REFRESH, headers={"X-API-Key": "guess"})
    assert_error(limited, 429, "too_many_requests")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # The limit is checked before the key, so the right key does not bypass it either...
    assert bare_client.post(REFRESH, headers={"X-API-Key": OPS_API_KEY}).status_code == 429
    # ...while job status lookups have their own budget.
    assert bare_client.get(f"{REFRESH}/{'0' * 32}", headers=ADMIN).status_code == 404


def test_polling_a_job_does_not_use_up_the_refresh_action_and_has_its_own_limit(bare_client):
    """An operator polling a job every 2 s (30/minute) outlived a 10/minute admin limit before."""
    job = bare_client.post(REFRESH, headers=ADMIN)
    assert job.status_code == 202
    status = f"{REFRESH}/{job.json()['job_id']}"
    for _ in range(ADMIN_READ_RATE):
        assert bare_client.get(status, headers=ADMIN).status_code == 200
    limited = bare_client.get(status, headers=ADMIN)
    assert_error(limited, 429, "too_many_requests")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # The action's window is untouched by the polling: ADMIN_RATE - 1 more starts are allowed.
    for _ in range(ADMIN_RATE - 1):
        assert bare_client.post(REFRESH, headers=ADMIN).status_code == 202
    assert bare_client.post(REFRESH, headers=ADMIN).status_code == 429


def test_the_rate_limit_is_per_client_and_admin_only(bare_settings):
    app = create_app(bare_settings)
    # One client runs the app's lifespan; the other only needs a different address.
    with TestClient(app, client=("192.0.2.10", 40000)) as first:
        second = TestClient(app, client=("192.0.2.11", 40000))
        for _ in range(ADMIN_RATE + 1):
            first.post(REFRESH, headers={"X-API-Key": "guess"})
        assert first.post(REFRESH).status_code == 429
        assert second.post(REFRESH).status_code == 401  # another address has its own budget
        for _ in range(ADMIN_RATE * 3):
            assert first.get("/health").status_code == 200  # public endpoints are not limited


def test_a_bad_rate_setting_names_the_variable():
    with pytest.raises(SettingsError, match="FINVERSE_ADMIN_RATE_LIMIT"):
        load_settings(_env_file=None, admin_rate_limit="lots")
    with pytest.raises(SettingsError, match="FINVERSE_ADMIN_READ_RATE_LIMIT"):
        load_settings(_env_file=None, admin_read_rate_limit="0/minute")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, admin_rate_limit="0/minute")


# --- request ids -----------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(bare_client):
    first = bare_client.get("/health").headers["x-request-id"]
    second = bare_client.get("/health").headers["x-request-id"]
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second
    missing = bare_client.get("/no/such/path")
    assert missing.status_code == 404 and len(missing.headers["x-request-id"]) == 32


def test_a_safe_incoming_request_id_is_kept_and_an_unsafe_one_replaced(bare_client):
    kept = bare_client.get("/health", headers={"X-Request-ID": "lb-7f3a.2:abc_D-1"})
    assert kept.headers["x-request-id"] == "lb-7f3a.2:abc_D-1"
    for unsafe in ("<script>alert(1)</script>", "a" * 129, 'quote"and space'):
        replaced = bare_client.get("/health", headers={"X-Request-ID": unsafe})
        assert replaced.headers["x-request-id"] != unsafe
        assert len(replaced.headers["x-request-id"]) == 32


# --- CORS ------------------------------------------------------------------------------------------


def test_cors_allows_only_the_configured_origins(bare_client):
    allowed = bare_client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    other = bare_client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_wildcard_origin_never_comes_with_credentials(bare_settings):
    settings = bare_settings.model_copy(update={"cors_origins": ["*"]})
    with TestClient(create_app(settings)) as client:
        response = client.get("/health", headers={"Origin": "https://anyone.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


# --- production start-up ---------------------------------------------------------------------------


def run_cli(cwd, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FINVERSE_")}
    return subprocess.run(
        [sys.executable, "-m", "finverse_reco", *args],
        cwd=cwd,  # no stray .env
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "FINVERSE_API_KEY"),
        ({"FINVERSE_API_KEY": "change-me"}, "FINVERSE_API_KEY"),
        ({"FINVERSE_API_KEY": "k" * 40, "FINVERSE_CORS_ORIGINS": '["*"]'}, "FINVERSE_CORS_ORIGINS"),
    ],
)
def test_production_refuses_to_start_with_a_default_key_or_wildcard_cors(tmp_path, env, named):
    result = run_cli(tmp_path, {"FINVERSE_ENVIRONMENT": "production", **env}, "serve")
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


# --- HEAD on the probes ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_head_on_a_probe_answers_like_get_without_a_body(bare_client, path):
    get, head = bare_client.get(path), bare_client.head(path)
    assert head.status_code == get.status_code  # /ready: 503 here, no model yet
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""
