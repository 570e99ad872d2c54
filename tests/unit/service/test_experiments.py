"""Experiments: the arm split follows the shares, is the same on every replica and after a
restart, and the file is the one source (start, stop, refuse a second running one)."""

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from finverse_reco.policy import Policy, PolicyVariants, RulesFile
from finverse_reco.service.experiments import (
    Arm,
    Experiment,
    ExperimentConflict,
    ExperimentError,
    ExperimentRegistry,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
IDS = [f"user_{n:05d}" for n in range(10_000)]
BASE = RulesFile.model_validate(
    {"version": "base-1", "rules": [{"kind": "eligibility"}], "diversity": {"max_per_category": 3}}
)
STRICT = """version = "strict-1"
[[rules]]
kind = "eligibility"
fail_closed_categories = ["credit_card"]
[rules.categories.credit_card]
min_age = 150
"""


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
        (
            b'{"experiments": [{"id": "e", "salt": "s", "started_at": "2026-01-01T00:00:00Z",'
            b' "arms": [{"name": "a", "share": 1.0, "policy": "../../etc/rules.toml"}]}]}',
            "policy",
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


def variants_in(directory) -> PolicyVariants:
    (directory / "strict.toml").write_text(STRICT)
    return PolicyVariants(Policy(BASE), directory)


def with_variant(experiment_id="exp-v", variant="strict.toml") -> Experiment:
    arms = (
        Arm(name="control", share=0.5),
        Arm(name="strict", share=0.5, policy=variant),
    )
    return Experiment(id=experiment_id, salt="s", arms=arms, started_at=NOW)


def test_an_arm_serves_the_base_policy_tightened_by_its_variant(tmp_path):
    path = tmp_path / "experiments.json"
    registry = ExperimentRegistry(path, variants_in(tmp_path))
    registry.start(with_variant())
    assignments = {registry.assign(user).arm.name: registry.assign(user) for user in IDS[:50]}
    assert assignments["control"].policy is None  # the base policy, as outside the experiment
    strict = assignments["strict"].policy
    assert strict.version == "base-1+strict-1" and registry.variant_policies == (strict,)
    assert [rule.kind for rule in strict.rules.rules] == ["eligibility", "eligibility"]
    assert orjson.loads(path.read_bytes())["experiments"][0]["arms"][1]["policy"] == "strict.toml"
    # Every replica compiles the same arms from the file.
    replica = ExperimentRegistry(path, variants_in(tmp_path))
    replica.refresh()
    assert replica.assign(IDS[0]).arm == registry.assign(IDS[0]).arm
    assert replica.variant_policies[0].version == "base-1+strict-1"
    registry.stop("exp-v")
    assert registry.assign(IDS[0]) is None and registry.variant_policies == ()


@pytest.mark.parametrize(
    ("variant", "words"),
    [
        (
            "missing.toml",
            r"arm 'strict': policy variant rules file .*missing\.toml.*cannot be read",
        ),
        ("broken.toml", r"arm 'strict': policy variant rules file .*broken\.toml, line 3: rules"),
    ],
)
def test_a_bad_variant_is_refused_and_nothing_is_written(tmp_path, variant, words):
    (tmp_path / "broken.toml").write_text('version = "b"\n[[rules]]\nkind = "nonsense"\n')
    path = tmp_path / "experiments.json"
    registry = ExperimentRegistry(path, variants_in(tmp_path))
    with pytest.raises(ExperimentError, match=words):
        registry.start(with_variant(variant=variant))
    assert not path.exists() and registry.running is None


@pytest.mark.parametrize("name", ["../strict.toml", "/tmp/strict.toml", "strict", ".x.toml"])
def test_a_variant_is_named_by_file_name_only(name):
    with pytest.raises(ValidationError, match="policy"):
        Arm.model_validate({"name": "strict", "share": 1.0, "policy": name})


def test_without_a_variants_directory_a_variant_is_refused(tmp_path):
    registry = ExperimentRegistry(tmp_path / "experiments.json")
    with pytest.raises(ExperimentError, match="not configured"):
        registry.start(with_variant())


def test_a_changed_variant_is_read_again_and_a_broken_one_keeps_what_runs(tmp_path):
    path = tmp_path / "experiments.json"
    writer = ExperimentRegistry(path, variants_in(tmp_path))
    writer.start(with_variant())
    reader = ExperimentRegistry(path, PolicyVariants(Policy(BASE), tmp_path))
    assert reader.refresh() and not reader.refresh()
    (tmp_path / "strict.toml").write_text(STRICT.replace("strict-1", "strict-2"))
    assert reader.refresh() and reader.variant_policies[0].version == "base-1+strict-2"
    (tmp_path / "strict.toml").write_text("version = ")
    with pytest.raises(ExperimentError, match=r"strict\.toml, line 0: Invalid value"):
        reader.refresh()
    assert reader.variant_policies[0].version == "base-1+strict-2"  # what ran keeps running
    (tmp_path / "strict.toml").unlink()
    with pytest.raises(ExperimentError, match="cannot be read"):
        reader.refresh()
    # An experiment whose variant went bad can still be stopped.
    assert reader.stop("exp-v").status == "stopped"
    assert reader.running is None and reader.variant_policies == ()
