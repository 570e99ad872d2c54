"""The activation guardrail: a model clearly worse on validation than the active one stays inactive."""

from __future__ import annotations

import orjson
import pytest

from finverse_reco.cli import main, train_once
from finverse_reco.model import BlendParams, ModelParams, TrainingParams, write_params_file
from finverse_reco.model.artifacts import current_version, list_versions, read_manifest
from finverse_reco.pipeline import FeatureConfig
from finverse_reco.service.training import GUARDRAIL_METRIC
from finverse_reco.service.training_result import EXIT_NOT_ACTIVATED


def raise_active_metric(settings, value: float) -> str:
    """Pretend the active model scored `value` on validation (the manifest is plain JSON)."""
    active = current_version(settings.model_dir)
    path = settings.model_dir / "versions" / active / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    manifest["metrics"][GUARDRAIL_METRIC] = value
    path.write_bytes(orjson.dumps(manifest))
    return active


async def test_a_worse_model_is_kept_inactive_with_the_reason(world):
    settings = world.model_copy(update={"model_max_precision_drop": 0.02})
    active = raise_active_metric(settings, 0.99)

    assert await train_once(settings) == EXIT_NOT_ACTIVATED

    assert current_version(settings.model_dir) == active, "serving keeps the better model"
    newest = list_versions(settings.model_dir)[-1]
    assert newest != active
    manifest = read_manifest(settings.model_dir, newest)
    assert manifest["activated"] is False
    assert "worse than the active model" in manifest["activation_reason"]


async def test_a_model_within_the_allowed_drop_is_activated(world):
    settings = world.model_copy(update={"model_max_precision_drop": 0.02})
    raise_active_metric(settings, 0.0)

    assert await train_once(settings) == 0
    newest = list_versions(settings.model_dir)[-1]
    assert current_version(settings.model_dir) == newest
    assert read_manifest(settings.model_dir, newest)["activated"] is True


async def test_training_fits_what_the_params_file_says_and_the_manifest_names_it(world, tmp_path):
    """FINVERSE_MODEL_PARAMS_FILE decides what is fitted, for the guardrail's validation fit
    too, and every version records which file (and version) it was fitted from."""
    path = tmp_path / "params.json"
    version = write_params_file(
        path,
        TrainingParams(
            ModelParams(no_components=12, epochs=3, learning_rate=0.07),
            FeatureConfig(user_identity_weight=0.6, item_identity_weight=0.3),
            BlendParams(item_item_weight=0.5, l2=50.0, rank=6, segment_weight=1.0),
        ),
        {"dataset": "test"},
    )
    settings = world.model_copy(update={"model_params_file": path})
    assert await train_once(settings) == 0
    newest = list_versions(settings.model_dir)[-1]
    manifest = read_manifest(settings.model_dir, newest)
    parameters = manifest["parameters"]
    assert parameters["source"] == f"{path} ({version})"
    assert parameters["model"]["no_components"] == 12 and parameters["model"]["epochs"] == 3
    assert parameters["features"]["user_identity_weight"] == 0.6
    assert manifest["metrics"]["item_item"] == "blended"
    assert GUARDRAIL_METRIC in manifest["metrics"]
    # 12 LightFM dimensions, then the blends' (6 item-item, one per segment).
    assert manifest["shape"]["dim"] == 12 + 6 + manifest["metrics"]["segments"]


def test_a_broken_params_file_stops_train_before_any_work(tmp_path, monkeypatch, capsys):
    path = tmp_path / "params.json"
    path.write_text('{"format": "finverse-reco/params/1"}')
    monkeypatch.setenv("FINVERSE_MODEL_PARAMS_FILE", str(path))
    monkeypatch.setenv("FINVERSE_STORE_URL", f"sqlite:///{tmp_path / 'never-created.db'}")
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert "FINVERSE_MODEL_PARAMS_FILE" in capsys.readouterr().err
    assert not (tmp_path / "never-created.db").exists()
