"""What one training run fits, and the versioned params file that carries it.

`TrainingParams` is everything that decides the served model: LightFM's hyperparameters, how much of
a user / item row the identity feature takes, and the item-item blend. `finverse-reco tune` chooses
them on a validation split and writes a params file; `finverse-reco train` (and the scheduled
retraining, and the guardrail's validation fit) read it through `FINVERSE_MODEL_PARAMS_FILE`, and
`finverse-reco evaluate` fits with the same file, so the published quality is the served model's.

The file is JSON: a `format` tag, a `version` (creation time + a hash of the content), the three
sections, and `tuned_on` (where and how the search ran: provenance only, never read back into a fit).
How training runs rather than what it fits (LightFM threads) stays a setting.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from finverse_reco.model.hybrid import ModelParams
from finverse_reco.pipeline.features import FeatureConfig

PARAMS_FORMAT = "finverse-reco/params/1"
# The fields of each section a params file holds; anything else in the file is an error.
MODEL_FIELDS = (
    "no_components",
    "learning_rate",
    "loss",
    "epochs",
    "user_alpha",
    "item_alpha",
    "max_sampled",
    "learning_schedule",
    "random_state",
    "sample_weighting",
    "max_sample_weight",
)
FEATURE_FIELDS = ("user_identity_weight", "item_identity_weight")


@dataclass(frozen=True)
class BlendParams:
    """What the served score adds to LightFM's, as extra dimensions of the same dot product
    (`model/blend.py`); a weight of 0 adds nothing.

    `item_item_weight`: for a user with history, EASE (Steck 2019, ridge `l2`) reduced to `rank`
    factors. EASE needs an items × items matrix: above `max_items` it is skipped (the index's
    metrics say so). `segment_weight`: for a customer known only by demographics, the popularity
    within their segments (the service's fallback list) added to what the features say.
    """

    item_item_weight: float = 0.0
    l2: float = 500.0
    rank: int = 64
    max_items: int = 5_000
    segment_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.item_item_weight < 0 or self.segment_weight < 0:
            raise ValueError("blend weights must be >= 0")
        if self.l2 <= 0 or self.rank < 1 or self.max_items < 1:
            raise ValueError("blend l2 must be > 0, rank and max_items >= 1")


@dataclass(frozen=True)
class TrainingParams:
    """Everything one training fits. `source` says where it came from (a file and its version,
    or the settings), for the manifest and the evaluation report."""

    model: ModelParams = field(default_factory=ModelParams)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    blend: BlendParams = field(default_factory=BlendParams)
    source: str = "defaults"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {name: getattr(self.model, name) for name in MODEL_FIELDS},
            "features": {name: getattr(self.features, name) for name in FEATURE_FIELDS},
            "blend": asdict(self.blend),
        }

    def with_threads(self, num_threads: int) -> TrainingParams:
        return replace(self, model=replace(self.model, num_threads=num_threads))


class ParamsFileError(ValueError):
    """A params file is missing, unreadable or malformed; the message says which and why."""


class _ParamsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["finverse-reco/params/1"]
    version: str
    created_at: datetime
    model: dict[str, Any]
    features: dict[str, float]
    blend: dict[str, float | int]
    tuned_on: dict[str, Any] = {}


def write_params_file(path: Path, params: TrainingParams, tuned_on: dict[str, Any]) -> str:
    """Write `params` (atomically: a reader sees the old file or the new one) and return the
    version, `<UTC time>-<8 hex digits of the content's sha256>`."""
    content = params.to_dict()
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]
    created_at = datetime.now(UTC)
    version = f"{created_at:%Y%m%dT%H%M%SZ}-{digest}"
    document = {
        "format": PARAMS_FORMAT,
        "version": version,
        "created_at": created_at.isoformat(),
        **content,
        "tuned_on": tuned_on,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(staging, path)
    return version


def read_params_file(
    path: Path, *, base: TrainingParams | None = None
) -> tuple[TrainingParams, dict[str, Any]]:
    """The params a file holds (over `base`, whose LightFM threads are kept) and its `tuned_on`."""
    path = Path(path)
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ParamsFileError(f"{path}: not found") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ParamsFileError(f"{path}: not readable as JSON ({exc})") from None
    try:
        document = _ParamsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ParamsFileError(f"{path}: not a {PARAMS_FORMAT} file ({problems})") from None
    base = base or TrainingParams()
    try:
        params = TrainingParams(
            model=_replace_known(base.model, document.model, MODEL_FIELDS, "model"),
            features=_replace_known(base.features, document.features, FEATURE_FIELDS, "features"),
            blend=_replace_known(
                base.blend, document.blend, [f.name for f in fields(BlendParams)], "blend"
            ),
            source=f"{path} ({document.version})",
        )
    except (TypeError, ValueError) as exc:
        raise ParamsFileError(f"{path}: {exc}") from None
    return params, document.tuned_on


def _replace_known(value: Any, changes: dict[str, Any], allowed, section: str) -> Any:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {section} field(s) {', '.join(unknown)}")
    return replace(value, **changes)
