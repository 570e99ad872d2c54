"""Fixtures shared by every test folder: the real local services, required under CI."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RABBITMQ_URL = os.environ.get("FINVERSE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("FINVERSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def service_missing(name: str, reason: str) -> None:
    """Under CI a missing service is a failure; on a laptop the test is skipped with the reason."""
    message = f"{name} is not available: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: service-backed tests never skip)")
    pytest.skip(message)


def require_port(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        service_missing(name, f"{host}:{port} ({exc})")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require_port("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_port("Redis", "127.0.0.1", 6379)
    return REDIS_URL


CHROMIUM = os.environ.get("FINVERSE_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (scripts/ensure-services.sh installs it); Playwright never downloads one."""
    if not os.access(CHROMIUM, os.X_OK):
        service_missing("Chromium", f"no executable at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM
