"""The one composition root: every adapter and configuration object of the service, from `Settings`.

`cli.py` (every process) and `api/app.py` (the HTTP app) build what they need here and nowhere else;
nothing below reads settings. Imports stay inside the functions that need them, so a process loads
only its own adapters: `train` and `consume` never import FastAPI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from finverse_reco.settings import Settings

if TYPE_CHECKING:
    from finverse_reco.catalog.base import ProductCatalog
    from finverse_reco.erasure import ErasedCustomers
    from finverse_reco.ingest import IngestConfig
    from finverse_reco.ingest.admission import EventAdmission
    from finverse_reco.model import ModelParams, TrainingParams
    from finverse_reco.pipeline import WeightingConfig
    from finverse_reco.policy import Policy
    from finverse_reco.service.audit import AuditConfig
    from finverse_reco.service.experiments import Experiments
    from finverse_reco.service.models import ModelHolder, ModelWatcher
    from finverse_reco.service.online_stats import OnlineStats
    from finverse_reco.service.recommendations import ServiceConfig
    from finverse_reco.service.training import TrainingConfig
    from finverse_reco.store import InteractionStore
    from finverse_reco.store.artifacts import ArtifactStore
    from finverse_reco.store.coordination import Coordination

log = logging.getLogger(__name__)

# serving: the API (short timeouts: a request must not wait for an election);
# worker: consume, seed-demo, migrate (rides out an election); trainer: a worker on the trainer URL.
ProcessKind = Literal["serving", "worker", "trainer"]


def store(settings: Settings, process: ProcessKind) -> InteractionStore:
    """The interaction store as a process of that kind uses it (built, not yet opened)."""
    from finverse_reco.store import open_store

    return open_store(store_url(settings, process), **store_options(settings, process))


def artifact_store(settings: Settings) -> ArtifactStore:
    """Where model versions live (FINVERSE_ARTIFACTS): the model directory, or the store's database."""
    from finverse_reco.store.artifacts import DirectoryArtifactStore

    if settings.artifacts == "dir":
        return DirectoryArtifactStore(settings.model_dir)
    if settings.store_url.startswith("sqlite://"):
        from finverse_reco.store.artifacts_sqlite import SQLiteArtifactStore

        return SQLiteArtifactStore(_sqlite_path(settings.store_url))
    from finverse_reco.store.artifacts_mongo import MongoArtifactStore

    return MongoArtifactStore.from_url(settings.store_url, **store_options(settings, "worker"))


def coordination(settings: Settings, process: ProcessKind) -> Coordination:
    """The training lease and refresh job records, in the interaction store's database."""
    if settings.store_url.startswith("sqlite://"):
        from finverse_reco.store.coordination_sqlite import SQLiteCoordination

        return SQLiteCoordination(_sqlite_path(settings.store_url))
    from finverse_reco.store.coordination_mongo import MongoCoordination

    return MongoCoordination.from_url(settings.store_url, **store_options(settings, process))


def _sqlite_path(url: str) -> Path:
    from finverse_reco.store.sqlite import SQLiteInteractionStore

    return SQLiteInteractionStore.from_url(url).path


def store_url(settings: Settings, process: ProcessKind) -> str:
    if process == "trainer" and settings.store_trainer_url:
        return settings.store_trainer_url
    return settings.store_url


def store_options(settings: Settings, process: ProcessKind) -> dict[str, Any]:
    """The client defaults of one kind of process, from the settings (docs/STORES.md)."""
    timeout_ms = (
        settings.store_timeout_ms if process == "serving" else settings.store_worker_timeout_ms
    )
    return {
        "timeout_ms": timeout_ms,
        "server_selection_timeout_ms": timeout_ms,
        "pool_size": settings.store_pool_size,
    }


def catalog(settings: Settings) -> ProductCatalog:
    """The Banking Service behind its caches when FINVERSE_BANKING_URL is set, else the catalog
    file; with neither, an empty catalog (product details then come from model metadata)."""
    from finverse_reco.catalog.local import LocalCatalog

    if settings.banking_url:
        from finverse_reco.catalog.banking import BankingServiceCatalog
        from finverse_reco.catalog.cache import CachedCatalog

        return CachedCatalog(
            BankingServiceCatalog(
                settings.banking_url,
                timeout_ms=settings.banking_timeout_ms,
                budget_ms=settings.banking_budget_ms,
                max_retries=settings.banking_max_retries,
                breaker_failures=settings.banking_breaker_failures,
                breaker_reset_seconds=settings.banking_breaker_reset_seconds,
            ),
            ttl_seconds=settings.cache_ttl_seconds,
            redis_url=settings.redis_url,
        )
    if settings.catalog_path.exists():
        return LocalCatalog.from_file(settings.catalog_path)
    log.warning("no catalog at %s; product details come from model metadata", settings.catalog_path)
    return LocalCatalog([])


def weighting(settings: Settings) -> WeightingConfig:
    from finverse_reco.pipeline import WeightingConfig

    return WeightingConfig(
        type_weights=settings.type_weights,
        view_saturation_seconds=settings.view_saturation_seconds,
        decay_half_life_days=settings.decay_half_life_days,
        dismiss_keep=settings.dismiss_keep,
    )


def ingest_config(settings: Settings) -> IngestConfig:
    """The RabbitMQ side; a SystemExit naming the setting when no broker is configured."""
    from finverse_reco.ingest import IngestConfig

    if not settings.rabbitmq_url:
        raise SystemExit("FINVERSE_RABBITMQ_URL is not set: there is no broker to talk to")
    return IngestConfig(
        rabbitmq_url=settings.rabbitmq_url,
        prefetch=settings.rabbitmq_prefetch,
        message_ttl_ms=settings.rabbitmq_message_ttl_ms,
        queue_type=settings.rabbitmq_queue_type,
        max_attempts=settings.rabbitmq_max_attempts,
        retry_delay_ms=settings.rabbitmq_retry_delay_ms,
        batch_size=settings.ingest_batch_size,
        batch_timeout_ms=settings.ingest_batch_timeout_ms,
        name_prefix=settings.rabbitmq_name_prefix,
    )


def event_admission(
    settings: Settings,
    catalog: ProductCatalog,
    store: InteractionStore,
    erased: ErasedCustomers | None = None,
) -> EventAdmission:
    """The write entry points' rules (HTTP and the consumer): the timestamp window, products
    checked against `catalog` unless FINVERSE_ACCEPT_UNKNOWN_PRODUCTS, erased customers' events
    dropped (tombstones read from `store`)."""
    from datetime import timedelta

    from finverse_reco.events import EventRules
    from finverse_reco.ingest.admission import EventAdmission

    return EventAdmission(
        rules=EventRules(
            earliest=settings.event_earliest,
            max_future=timedelta(seconds=settings.event_max_future_seconds),
        ),
        products=None if settings.accept_unknown_products else catalog,
        erased=erased if erased is not None else erased_customers(settings),
        tombstones=store,
    )


def model_params(settings: Settings) -> ModelParams:
    from finverse_reco.model import ModelParams

    return ModelParams(
        no_components=settings.model_components,
        learning_rate=settings.model_learning_rate,
        loss=settings.model_loss,
        epochs=settings.model_epochs,
        user_alpha=settings.model_user_alpha,
        item_alpha=settings.model_item_alpha,
        num_threads=settings.model_threads,
    )


def training_params(
    settings: Settings, params_file: Path | None = None
) -> tuple[TrainingParams, dict[str, Any]]:
    """What `train` fits and, when it comes from a file, the file's `tuned_on`: the params file
    (`params_file`, else FINVERSE_MODEL_PARAMS_FILE, written by `tune`) or, without one, the
    FINVERSE_MODEL_* settings. LightFM runs on FINVERSE_MODEL_THREADS threads either way. A bad
    file raises `ParamsFileError`; every training run calls this, so a replaced file is picked up."""
    from finverse_reco.model import TrainingParams, read_params_file
    from finverse_reco.pipeline import FeatureConfig

    attributes = settings.model_user_attributes
    features = FeatureConfig(user_attributes=None if attributes is None else tuple(attributes))
    base = TrainingParams(model=model_params(settings), features=features, source="settings")
    path = params_file or settings.model_params_file
    if path is None:
        return base, {}
    return read_params_file(path, base=base)


def training_config(settings: Settings) -> TrainingConfig:
    from finverse_reco.service.training import TrainingConfig

    return TrainingConfig(
        params=training_params(settings)[0],
        weighting=weighting(settings),
        model_dir=settings.model_dir,
        window_days=settings.training_window_days,
        keep_versions=settings.model_keep_versions,
        max_precision_drop=settings.model_max_precision_drop,
        erasure_key=settings.erasure_key,
        lease_seconds=settings.training_lease_seconds,
    )


def service_config(settings: Settings) -> ServiceConfig:
    from finverse_reco.service.recommendations import ServiceConfig

    return ServiceConfig(
        weighting=weighting(settings),
        store_timeout_seconds=settings.store_timeout_ms / 1000,
        # The catalog enforces its own budget; this outer bound only catches a catalog that
        # ignores it, so it must not fire first (a cancelled call counts as a breaker failure).
        catalog_budget_seconds=settings.banking_budget_ms / 1000 + 0.05,
        catalog_refresh_seconds=settings.policy_catalog_refresh_seconds,
    )


def policy(settings: Settings) -> Policy:
    """The policy step's rules: FINVERSE_POLICY_FILE, else the shipped default. A bad file stops
    start-up with a SystemExit naming the file, the line and the reason."""
    from finverse_reco.policy import Policy, PolicyFileError, load_rules

    try:
        rules = load_rules(settings.policy_file)
    except PolicyFileError as exc:
        raise SystemExit(f"FINVERSE_POLICY_FILE: {exc}") from None
    return Policy(rules, enabled=settings.policy_enabled)


def erased_customers(settings: Settings) -> ErasedCustomers:
    """This process's view of the erased customers (filled from the store's tombstones)."""
    from finverse_reco.erasure import ErasedCustomers

    return ErasedCustomers(settings.erasure_key)


def audit_config(settings: Settings) -> AuditConfig:
    from datetime import timedelta

    from finverse_reco.service.audit import AuditConfig

    retention = settings.audit_retention_days
    return AuditConfig(
        enabled=settings.audit_enabled,
        buffer_size=settings.audit_buffer_size,
        batch_size=settings.audit_batch_size,
        flush_interval_s=settings.audit_flush_ms / 1000,
        retention=None if retention is None else timedelta(days=retention),
    )


def model_watcher(
    settings: Settings, models: ModelHolder, artifacts: ArtifactStore | None = None
) -> ModelWatcher:
    """Keeps `models` on the active version (hot swap): FINVERSE_MODEL_DIR's, or with
    FINVERSE_ARTIFACTS=store the store's, downloaded into the model directory first."""
    from finverse_reco.service.models import ModelWatcher

    remote = artifacts if settings.artifacts == "store" else None
    return ModelWatcher(models, settings.model_dir, settings.model_poll_seconds, remote)


def experiments(settings: Settings, watcher: ModelWatcher, base: Policy) -> Experiments:
    """The experiments file, the model versions its arms serve (through `watcher`) and the
    policy variants they serve on top of `base` (FINVERSE_POLICY_VARIANTS_DIR, else the rules
    file's directory)."""
    from finverse_reco.policy import DEFAULT_RULES_FILE, PolicyVariants
    from finverse_reco.service.experiments import ExperimentRegistry, Experiments

    directory = settings.policy_variants_dir or (settings.policy_file or DEFAULT_RULES_FILE).parent
    registry = ExperimentRegistry(settings.experiments_file, PolicyVariants(base, directory))
    return Experiments(registry, watcher)


def online_stats(settings: Settings, store: InteractionStore, models: ModelHolder) -> OnlineStats:
    """Online metrics from `store`; a product's category from the model `models` serves."""
    from datetime import timedelta

    from finverse_reco.service.online_stats import OnlineStats

    return OnlineStats(
        store,
        window=timedelta(hours=settings.online_attribution_hours),
        metrics_period=timedelta(hours=settings.online_metrics_hours),
        metrics_refresh=timedelta(seconds=settings.online_metrics_refresh_seconds),
        category_of=models.category_of,
    )
