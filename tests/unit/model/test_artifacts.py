import os
import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from ranked import ranked, user_query  # tests/support

from finverse_reco.index import ARRAY_FIELDS
from finverse_reco.model.artifacts import (
    ArtifactError,
    activate,
    current_version,
    list_versions,
    load_current,
    load_version,
    prune,
    read_manifest,
    save_version,
)


@pytest.fixture
def model_dir(tmp_path):
    return tmp_path / "models"


def version_dir(model_dir: Path, version: str) -> Path:
    return model_dir / "versions" / version


def test_round_trip_gives_identical_arrays_and_mappings(model_dir, trained_index):
    version = save_version(model_dir, trained_index, {"trigger": "test"})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", version)
    loaded = load_version(model_dir, version)
    assert loaded.version == version
    for name in ARRAY_FIELDS:
        original, restored = getattr(trained_index, name), getattr(loaded, name)
        assert restored.dtype == original.dtype, name
        np.testing.assert_array_equal(restored, original, err_msg=name)
    assert loaded.name_lists() == trained_index.name_lists()
    assert loaded.users == trained_index.users and loaded.items == trained_index.items
    assert loaded.feature_config == trained_index.feature_config
    assert dict(loaded.metrics) == dict(trained_index.metrics)
    assert loaded.params["model"] == trained_index.params["model"]
    vector = user_query(loaded, 0)
    np.testing.assert_array_equal(
        ranked(loaded, vector, 10)[0], ranked(trained_index, vector, 10)[0]
    )


def test_manifest_describes_the_version(model_dir, trained_index):
    version = save_version(model_dir, trained_index, {"trigger": "test"})
    manifest = read_manifest(model_dir, version)
    assert manifest["format_version"] == 1
    assert manifest["model_version"] == version
    assert manifest["trigger"] == "test"
    assert manifest["parameters"]["model"]["loss"] == "warp"
    assert manifest["counts"]["users"] == trained_index.n_users
    assert manifest["data_window"][0] <= manifest["data_window"][1]
    assert "validation_precision@10" in manifest["metrics"]
    assert set(manifest["files"]) == {"arrays.npz", "mappings.json"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_arrays_load_without_pickle(model_dir, trained_index):
    version = save_version(model_dir, trained_index)
    with np.load(version_dir(model_dir, version) / "arrays.npz", allow_pickle=False) as stored:
        assert set(stored.files) == set(ARRAY_FIELDS)
        assert all(stored[name].dtype != object for name in stored.files)
    mappings = orjson.loads((version_dir(model_dir, version) / "mappings.json").read_bytes())
    assert mappings == trained_index.name_lists()
    assert set(mappings) == {
        "user_ids",
        "item_ids",
        "user_feature_names",
        "item_feature_names",
        "category_names",
        "institution_names",
        "segment_keys",
    }


def test_activate_and_current(model_dir, trained_index):
    assert current_version(model_dir) is None
    assert load_current(model_dir) is None
    first = save_version(model_dir, trained_index)
    assert current_version(model_dir) is None  # saving does not activate
    activate(model_dir, first)
    assert current_version(model_dir) == first
    second = save_version(model_dir, trained_index)
    activate(model_dir, second)
    assert load_current(model_dir).version == second
    assert list_versions(model_dir) == sorted([first, second])
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".CURRENT")]


def test_truncated_arrays_are_refused(model_dir, trained_index):
    version = save_version(model_dir, trained_index)
    arrays = version_dir(model_dir, version) / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        load_version(model_dir, version)
    with pytest.raises(ArtifactError):
        activate(model_dir, version)
    assert current_version(model_dir) is None


@pytest.mark.parametrize("name", ["arrays.npz", "mappings.json"])
def test_a_flipped_byte_fails_the_checksum(model_dir, trained_index, name):
    version = save_version(model_dir, trained_index)
    path = version_dir(model_dir, version) / name
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0x01
    path.write_bytes(bytes(body))
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(model_dir, version)


def test_missing_manifest_is_refused(model_dir, trained_index):
    version = save_version(model_dir, trained_index)
    (version_dir(model_dir, version) / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load_version(model_dir, version)


def test_a_missing_file_is_refused(model_dir, trained_index):
    version = save_version(model_dir, trained_index)
    (version_dir(model_dir, version) / "mappings.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_version(model_dir, version)


def test_a_half_copied_version_is_refused_and_the_old_one_keeps_serving(model_dir, trained_index):
    good = save_version(model_dir, trained_index)
    activate(model_dir, good)
    # Another version arrives half-copied (its arrays but nothing else), CURRENT untouched.
    half = "29990101T000000Z-abcdef"
    version_dir(model_dir, half).mkdir()
    (version_dir(model_dir, half) / "arrays.npz").write_bytes(
        (version_dir(model_dir, good) / "arrays.npz").read_bytes()
    )
    with pytest.raises(ArtifactError):
        load_version(model_dir, half)
    with pytest.raises(ArtifactError):
        activate(model_dir, half)
    assert load_current(model_dir).version == good


def test_a_save_failing_midway_leaves_no_version_and_current_unchanged(model_dir, trained_index):
    good = save_version(model_dir, trained_index)
    activate(model_dir, good)
    # The arrays and mappings are written, then the manifest cannot be: the save fails mid-way.
    with pytest.raises(TypeError):
        save_version(model_dir, trained_index, {"unserialisable": object()})
    assert list_versions(model_dir) == [good]
    assert [p.name for p in (model_dir / "versions").iterdir()] == [good]
    assert current_version(model_dir) == good
    assert load_current(model_dir).version == good


def test_a_crashed_writer_leaves_only_an_ignored_staging_directory(model_dir, trained_index):
    good = save_version(model_dir, trained_index)
    activate(model_dir, good)
    staging = model_dir / "versions" / ".staging-29990101T000000Z-000000"
    staging.mkdir()
    (staging / "arrays.npz").write_bytes(b"partial")
    assert list_versions(model_dir) == [good]
    assert load_current(model_dir).version == good
    prune(model_dir, keep=5)
    assert staging.exists()  # might still be being written
    old = 1_000_000_000
    os.utime(staging, (old, old))
    assert staging.name in prune(model_dir, keep=5)
    assert not staging.exists()


def test_prune_keeps_the_newest_and_the_active(model_dir, trained_index):
    ordered = sorted(save_version(model_dir, trained_index) for _ in range(4))
    activate(model_dir, ordered[0])  # the oldest is the active one
    assert prune(model_dir, keep=2) == [ordered[1]]
    assert list_versions(model_dir) == [ordered[0], *ordered[2:]]
    with pytest.raises(ValueError):
        prune(model_dir, keep=0)


def test_bad_names_and_pointers_are_refused(model_dir, trained_index):
    with pytest.raises(ArtifactError, match="not a version name"):
        load_version(model_dir, "../../etc")
    model_dir.mkdir(parents=True)
    (model_dir / "CURRENT").write_text("garbage/../x\n")
    with pytest.raises(ArtifactError, match="CURRENT"):
        current_version(model_dir)
    (model_dir / "CURRENT").write_text("20990101T000000Z-abcdef\n")
    with pytest.raises(ArtifactError, match="no manifest"):
        load_current(model_dir)


def test_reserved_manifest_keys_cannot_be_overridden(model_dir, trained_index):
    with pytest.raises(ValueError, match="reserved"):
        save_version(model_dir, trained_index, {"files": {}})
    assert list_versions(model_dir) == []
