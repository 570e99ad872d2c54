"""One training run: take the lease, read the store, fit, store a version, activate it (guarded
and fenced), prune.

Runs in its own process (`finverse-reco train`), never on the serving event loop. The training lease
in the store (store/coordination.py) makes it one training at a time across every process and
replica; it is renewed while the fit runs in a thread, and its fencing token guards activation, so
a trainer that lost the lease (paused past its expiry, cut off from the store) keeps what it
trained inactive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.erasure import ErasedCustomers
from finverse_reco.model import TrainingParams, train
from finverse_reco.model.artifacts import VERSIONS_DIR, ArtifactError, prune, save_version
from finverse_reco.pipeline import TrainingData, TrainingDataBuilder, WeightingConfig
from finverse_reco.store import InteractionStore, StoreUnavailable
from finverse_reco.store.artifacts import ArtifactStore, FencedOut, prune_versions
from finverse_reco.store.coordination import Coordination, Lease

log = logging.getLogger(__name__)

GUARDRAIL_METRIC = "validation_precision@10"


class TrainingBusy(RuntimeError):
    """Another process holds the training lease."""


class LeaseLost(RuntimeError):
    """The lease expired or passed to another trainer while this one trained."""


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
    lease_seconds: float = 60.0  # renewed every third of it while training


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    version: str
    activated: bool
    reason: str
    metrics: dict[str, float]


def lease_holder() -> str:
    """Who holds a lease, for operators: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Renews a lease every third of its length until stopped; `check` raises LeaseLost once a
    renewal was refused or the lease ran out without one (the store unreachable meanwhile)."""

    def __init__(self, coordination: Coordination, lease: Lease, ttl_seconds: float) -> None:
        self.lease = lease
        self._coordination = coordination
        self._ttl = ttl_seconds
        self._lost: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew_until_stopped(), name="training-lease")

    async def _renew_until_stopped(self) -> None:
        while self._lost is None:
            await asyncio.sleep(self._ttl / 3)
            try:
                renewed = await self._coordination.renew_lease(self.lease, self._ttl)
            except StoreUnavailable as exc:
                log.warning("could not renew the training lease: %s", exc)
                if time.time() >= self.lease.expires_at:
                    self._lost = "the lease expired while the store was unreachable"
                continue
            if renewed is None:
                self._lost = "the lease expired or another trainer took it"
            else:
                self.lease = renewed

    def check(self) -> None:
        if self._lost is None and time.time() >= self.lease.expires_at:
            self._lost = "the lease expired"
        if self._lost is not None:
            raise LeaseLost(self._lost)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


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
    # Customers who objected to personalisation are not learned from either (their events stay
    # stored: they may consent again).
    withheld = await store.customers_without_consent()
    empty = True
    async for batch in store.scan(since=since):
        left_out = erased.erased_among(batch.user_ids)
        if withheld:
            left_out |= withheld.intersection(batch.user_ids)
        batch = batch.without_users(left_out)
        builder.add(batch)
        empty = empty and not batch
    if empty:
        raise NoTrainingData("the store has no interactions in the training window")
    products = await catalog.all_products()
    return builder.build(products)


async def fit_and_publish(
    data: TrainingData,
    config: TrainingConfig,
    artifacts: ArtifactStore,
    keeper: LeaseKeeper,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """Train (in a thread: the lease keeps being renewed), store a complete version, and activate
    it unless it is worse than the active one or the lease was lost meanwhile."""
    index = await asyncio.to_thread(
        train,
        data,
        config.params,
        validation_fraction=config.validation_fraction,
        progress=progress,
    )
    metrics = dict(index.metrics)
    activated, reason = await _guardrail(artifacts, config, metrics)
    version = await asyncio.to_thread(
        save_version, config.model_dir, index, {"activated": activated, "activation_reason": reason}
    )
    await artifacts.put_version(version, Path(config.model_dir) / VERSIONS_DIR / version)
    if activated:
        try:
            keeper.check()
            await artifacts.activate(version, fence=keeper.lease.token)
        except (LeaseLost, FencedOut) as exc:
            activated, reason = False, f"not activated: {exc}"
    if activated:
        await prune_versions(artifacts, keep=config.keep_versions)
        await asyncio.to_thread(prune, config.model_dir, config.keep_versions)
        log.info("model %s trained and activated (%s)", version, reason)
    else:
        log.warning("model %s trained but not activated: %s", version, reason)
    return TrainingOutcome(version, activated, reason, metrics)


async def _guardrail(
    artifacts: ArtifactStore, config: TrainingConfig, metrics: dict[str, float]
) -> tuple[bool, str]:
    active = await artifacts.current()
    if active is None:
        return True, "no active model"
    try:
        manifest = await artifacts.manifest(active)
        previous = manifest.get("metrics", {}).get(GUARDRAIL_METRIC)
    except ArtifactError as exc:  # an unreadable active manifest must not block a fresh model
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
    *,
    artifacts: ArtifactStore,
    coordination: Coordination,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """The whole run under the training lease; raises TrainingBusy if another trainer holds it."""
    lease = await coordination.acquire_lease(lease_holder(), config.lease_seconds)
    if lease is None:
        raise TrainingBusy("another training holds the training lease")
    # From now on an activation fenced by an older lease is refused.
    await artifacts.raise_fence(lease.token)
    keeper = LeaseKeeper(coordination, lease, config.lease_seconds)
    keeper.start()
    try:
        data = await load_training_data(store, catalog, config)
        return await fit_and_publish(data, config, artifacts, keeper, progress)
    finally:
        await keeper.stop()
        try:
            await coordination.release_lease(keeper.lease)
        except StoreUnavailable as exc:  # it expires by itself
            log.warning("could not release the training lease: %s", exc)
