"""The activation guardrail: a model clearly worse on validation than the active one stays inactive."""

from __future__ import annotations

import orjson

from finverse_reco.cli import train_once
from finverse_reco.model.artifacts import current_version, list_versions, read_manifest
from finverse_reco.service.refresh import EXIT_NOT_ACTIVATED
from finverse_reco.service.training import GUARDRAIL_METRIC


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
