"""A new user's trial: bad arguments get one clear line and exit 2 (never a traceback), and a taken
port is reported before anything claims the service is up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def finverse(tmp_path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FINVERSE_STORE_URL": f"sqlite:///{tmp_path}/interactions.db",
        "FINVERSE_CATALOG_PATH": str(tmp_path / "catalog.json"),
        "FINVERSE_MODEL_DIR": str(tmp_path / "models"),
        "FINVERSE_REFRESH_SCHEDULE": "off",
        **env_overrides,
    }
    return subprocess.run(
        [sys.executable, "-m", "finverse_reco", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["seed-demo", "--users", "-5"], "--users: expected an integer >= 1, got -5"),
        (["seed-demo", "--products", "0"], "--products: expected an integer >= 1, got 0"),
        (["seed-demo", "--events", "many"], "--events: expected an integer >= 1, got 'many'"),
        (["seed-demo", "--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
        # Valid integers the demo world still cannot be built from: the world's own reason.
        (["seed-demo", "--products", "3"], "n_products must be >= 20 (two per category), got 3"),
        (["banking-stub", "--failure-rate", "2"], "expected a number from 0 to 1, got 2"),
        (["banking-stub", "--port", "70000"], "expected an integer from 1 to 65535, got 70000"),
        (["serve", "--workers", "0"], "--workers: expected an integer from 1 to 64, got 0"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(tmp_path, args, says):
    run = finverse(tmp_path, *args)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert says in lines[0] and lines[0].startswith("finverse-reco")
    assert not (tmp_path / "interactions.db").exists(), "nothing was written"


def test_a_taken_port_is_one_error_line_and_no_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = finverse(tmp_path, "serve", "--bootstrap", FINVERSE_PORT=str(port))
    assert run.returncode == 1
    output = run.stdout + run.stderr
    assert "FinVerse Recommendation Service" not in output
    assert output.strip().splitlines() == [
        f"failed: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "interactions.db").exists(), "no bootstrap before the port is ours"
