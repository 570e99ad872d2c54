"""One training run: read the store, build matrices, fit, publish a version (guarded), prune.

Runs in its own process (`finverse-reco train`), never on the serving event loop. A file lock in the
model directory makes it one training at a time across processes and replicas sharing that directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from filelock import FileLock, Timeout

from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.erasure import ErasedCustomers
from finverse_reco.model import TrainingParams, train
from finverse_reco.model.artifacts import (
    activate,
    current_version,
    prune,
    read_manifest,
    save_version,
)
from finverse_reco.pipeline import TrainingData, TrainingDataBuilder, WeightingConfig
from finverse_reco.store import InteractionStore

log = logging.getLogger(__name__)

LOCK_FILE = ".training.lock"
GUARDRAIL_METRIC = "validation_precision@10"


class TrainingBusy(RuntimeError):
    """Another process holds the training lock for this model directory."""


class NoTrainingData(RuntimeError):
    """The store has no interactions in the training window."""


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    params: TrainingParams  # the params file's, else the settings' (see `cli.training_config`)
    weighting: WeightingConfig
    model_dir: Path
    window_days: int | None = None
    keep_versions: int = 5
    max_precision_drop: float = 0.02
    validation_fraction: float = 0.1
    # Keys the tombstones of erased customers, whose events training leaves out.
    erasure_key: str = ""


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    version: str
    activated: bool
    reason: str
    metrics: dict[str, float]


def training_lock(model_dir: Path) -> FileLock:
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(model_dir) / LOCK_FILE))


async def load_training_data(
    store: InteractionStore, catalog: ProductCatalog, config: TrainingConfig
) -> TrainingData:
    since = datetime.now(UTC) - timedelta(days=config.window_days) if config.window_days else None
    # Feed each batch to the builder as it arrives: only compact codes are kept, never the documents.
    builder = TrainingDataBuilder(config.weighting, feature_config=config.params.features)
    # Erased customers' interactions are deleted, but one may arrive late or be scanned before its
    # deletion: the tombstones read now keep them out of this model's artifacts.
    erased = ErasedCustomers(config.erasure_key)
    erased.replace(await store.tombstones())
    empty = True
    async for batch in store.scan(since=since):
        batch = batch.without_users(erased.erased_among(batch.user_ids))
        builder.add(batch)
        empty = empty and not batch
    if empty:
        raise NoTrainingData("the store has no interactions in the training window")
    products = await catalog.all_products()
    return builder.build(products)


def fit_and_publish(
    data: TrainingData,
    config: TrainingConfig,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """Train, save a complete version, and activate it unless it is worse than the active one."""
    index = train(
        data, config.params, validation_fraction=config.validation_fraction, progress=progress
    )
    metrics = dict(index.metrics)
    activated, reason = _guardrail(config, metrics)
    version = save_version(
        config.model_dir,
        index,
        {"activated": activated, "activation_reason": reason},
    )
    if activated:
        activate(config.model_dir, version)
        prune(config.model_dir, keep=config.keep_versions)
        log.info("model %s trained and activated (%s)", version, reason)
    else:
        log.warning("model %s trained but not activated: %s", version, reason)
    return TrainingOutcome(version, activated, reason, metrics)


def _guardrail(config: TrainingConfig, metrics: dict[str, float]) -> tuple[bool, str]:
    active = current_version(config.model_dir)
    if active is None:
        return True, "no active model"
    try:
        previous = read_manifest(config.model_dir, active).get("metrics", {}).get(GUARDRAIL_METRIC)
    except Exception as exc:  # an unreadable active manifest must not block a fresh model
        return True, f"active model unreadable ({exc})"
    current = metrics.get(GUARDRAIL_METRIC)
    if previous is None or current is None:
        return True, "no validation metric to compare"
    if current < previous - config.max_precision_drop:
        return False, (
            f"{GUARDRAIL_METRIC} {current:.4f} is worse than the active model's {previous:.4f} "
            f"by more than {config.max_precision_drop}"
        )
    return True, f"{GUARDRAIL_METRIC} {current:.4f} vs active {previous:.4f}"


async def run_training(
    store: InteractionStore,
    catalog: ProductCatalog,
    config: TrainingConfig,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """The whole run under the model directory's lock; raises TrainingBusy if another holds it."""
    lock = training_lock(config.model_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise TrainingBusy(f"another training holds {lock.lock_file}") from None
    try:
        data = await load_training_data(store, catalog, config)
        return fit_and_publish(data, config, progress)
    finally:
        lock.release()
