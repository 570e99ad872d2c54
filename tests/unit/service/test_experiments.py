"""Experiments: the arm split follows the shares, is the same on every replica and after a
restart, and the file is the one source (start, stop, refuse a second running one)."""

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from finverse_reco.service.experiments import (
    Arm,
    Experiment,
    ExperimentConflict,
    ExperimentError,
    ExperimentRegistry,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
IDS = [f"user_{n:05d}" for n in range(10_000)]


def experiment(experiment_id="exp-1", salt="s1", shares=(0.7, 0.3)) -> Experiment:
    arms = [
        Arm(name=f"arm{i}", share=share, model_version=f"v{i}") for i, share in enumerate(shares)
    ]
    return Experiment(id=experiment_id, salt=salt, arms=tuple(arms), started_at=NOW)


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.7, 0.3), (0.1, 0.2, 0.7), (0.05, 0.95)])
def test_the_split_of_10000_ids_is_within_2_points_of_the_shares(shares):
    running = experiment(shares=shares)
    counts = Counter(running.arm_of(user).name for user in IDS)
    for i, share in enumerate(shares):
        assert abs(counts[f"arm{i}"] / len(IDS) - share) <= 0.02, counts


def test_every_replica_and_restart_assigns_the_same_arm(tmp_path):
    path = tmp_path / "experiments.json"
    ExperimentRegistry(path).start(experiment())
    first, second = ExperimentRegistry(path), ExperimentRegistry(path)  # two replicas
    first.refresh()
    second.refresh()
    arms = [first.assign(user).arm.name for user in IDS]
    assert arms == [second.assign(user).arm.name for user in IDS]
    restarted = ExperimentRegistry(path)
    restarted.refresh()
    assert arms == [restarted.assign(user).arm.name for user in IDS]


def test_a_new_salt_reshuffles(tmp_path):
    one, other = experiment(salt="a"), experiment(salt="b")
    moved = sum(one.arm_of(u).name != other.arm_of(u).name for u in IDS)
    assert moved > 3000  # independent hashes: about 2 × 0.7 × 0.3 of the ids change arm


def test_start_stop_and_one_running_at_a_time(tmp_path):
    path = tmp_path / "experiments.json"
    registry = ExperimentRegistry(path)
    registry.refresh()
    assert registry.assign("u1") is None
    registry.start(experiment())
    assert registry.assign("u1").experiment == "exp-1"
    assert registry.model_versions() == {"v0", "v1"}
    with pytest.raises(ExperimentConflict, match="running"):
        registry.start(experiment("exp-2"))
    stopped = registry.stop("exp-1")
    assert stopped.status == "stopped" and stopped.stopped_at is not None
    assert registry.assign("u1") is None and registry.model_versions() == set()
    assert registry.stop("exp-1") == stopped  # idempotent
    with pytest.raises(ExperimentConflict, match="exists"):
        registry.start(experiment())
    registry.start(experiment("exp-2"))
    on_disk = orjson.loads(path.read_bytes())["experiments"]
    assert [(e["id"], e["status"]) for e in on_disk] == [("exp-1", "stopped"), ("exp-2", "running")]
    with pytest.raises(KeyError):
        registry.stop("nope")


def test_a_replica_sees_a_change_written_by_another(tmp_path):
    path = tmp_path / "experiments.json"
    writer, reader = ExperimentRegistry(path), ExperimentRegistry(path)
    writer.start(experiment())
    assert reader.refresh() and reader.running.id == "exp-1"
    assert not reader.refresh()  # unchanged: not read again
    writer.stop("exp-1")
    assert reader.refresh() and reader.running is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "JSON"),
        (b'{"experiments": [{"id": "e", "salt": "s", "arms": []}]}', "arms"),
        (
            b'{"experiments": [{"id": "e", "salt": "s", "started_at": "2026-01-01T00:00:00Z",'
            b' "arms": [{"name": "a", "share": 0.6}]}]}',
            "add up to 1",
        ),
        (
            b'{"experiments": [{"id": "e", "salt": "s", "started_at": "2026-01-01T00:00:00Z",'
            b' "arms": [{"name": "a", "share": 1.0, "strategy": "random"}]}]}',
            "strategy",
        ),
    ],
)
def test_a_bad_file_is_refused_with_the_reason_and_changes_nothing(tmp_path, content, words):
    path = tmp_path / "experiments.json"
    registry = ExperimentRegistry(path)
    registry.start(experiment())
    path.write_bytes(content)
    with pytest.raises(ExperimentError, match=words):
        registry.refresh()
    assert registry.running.id == "exp-1"


def test_an_arm_naming_a_policy_variant_is_refused_not_ignored():
    # Policy-variant arms are not built: accepting the field would run the experiment without it.
    with pytest.raises(ValidationError, match="policy"):
        Arm.model_validate({"name": "strict", "share": 1.0, "policy": "strict-rules"})
