"""Issue 20's acceptance run at smoke size (bench/replicas.py): three `serve` replicas with their own
empty model directories, one MongoDB-protocol store, HAProxy in front; a refresh through A reaches
all three within the poll interval plus 5 s, B and C answer for A's job, C is SIGKILLed and comes
back mid-run, and the load balancer answers every request with one of the two versions."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from mongo_stand_in import IN_CI, stand_in_command

_BENCH = Path(__file__).resolve().parents[3] / "bench" / "replicas.py"
sys.path.insert(0, str(_BENCH.parent))
_spec = importlib.util.spec_from_file_location("finverse_bench_replicas", _BENCH)
assert _spec is not None and _spec.loader is not None
replicas = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = replicas
_spec.loader.exec_module(replicas)

POLL_SECONDS = 1.0


@pytest.fixture
def haproxy() -> None:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        if IN_CI:
            pytest.fail("HAProxy is missing: bash scripts/ensure-services.sh installs it")
        pytest.skip("HAProxy is missing: bash scripts/ensure-services.sh installs it")
    if stand_in_command() is None:
        pytest.fail("nx-27017 is missing (the dev extras)")


@pytest.mark.slow
@pytest.mark.mongo
def test_three_replicas_behind_haproxy_refresh_kill_and_no_failed_request(haproxy, tmp_path):
    summary = replicas.measure(
        tmp_path,
        rate=100,
        duration=30,
        refresh_at=3,
        kill_at=10,
        poll_seconds=POLL_SECONDS,
        users=300,
        products=200,
        events=15_000,
        epochs=5,
    )
    replicas.print_table(summary)
    assert replicas.misses_target(summary) == [], summary
    # The same, spelled out:
    assert summary["failed"] == 0
    assert len(summary["versions"]) == 2
    assert set(summary["reached_after_activation_s"]) == {"a", "b", "c"}
    assert max(summary["reached_after_activation_s"].values()) <= POLL_SECONDS + 5
    assert summary["killed_at"] is not None and summary["back_after_kill_s"] is not None
