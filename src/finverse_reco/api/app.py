"""The composition root of the HTTP process: settings in, a ready FastAPI app out."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from tenacity import AsyncRetrying, wait_exponential

from finverse_reco import __version__
from finverse_reco.api import metrics
from finverse_reco.api.dependencies import Components, pair_console_session_schemes
from finverse_reco.api.errors import install_error_handlers
from finverse_reco.api.middleware import (
    AdminRateLimitMiddleware,
    BodySizeLimitMiddleware,
    FailedAuthRateLimitMiddleware,
    RequestTelemetryMiddleware,
)
from finverse_reco.api.routers import admin, console, health, interactions, recommendations
from finverse_reco.api.sessions import ConsoleSessions
from finverse_reco.catalog.banking import BankingServiceCatalog
from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.catalog.cache import CachedCatalog
from finverse_reco.catalog.local import LocalCatalog
from finverse_reco.ingest import IngestConfig, InteractionConsumer
from finverse_reco.pipeline import WeightingConfig
from finverse_reco.service.catalog_search import CatalogSearch
from finverse_reco.service.model_versions import ModelVersions
from finverse_reco.service.models import ModelHolder, ModelWatcher
from finverse_reco.service.recommendations import RecommendationService, ServiceConfig
from finverse_reco.service.refresh import RefreshJobs, RefreshScheduler
from finverse_reco.service.status import ServiceStatus
from finverse_reco.settings import Settings, settings_env
from finverse_reco.store import InteractionStore, StoreUnavailable, open_store

log = logging.getLogger(__name__)


def build_catalog(settings: Settings) -> ProductCatalog:
    if settings.banking_url:
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


def weighting_from(settings: Settings) -> WeightingConfig:
    return WeightingConfig(
        type_weights=settings.type_weights,
        view_saturation_seconds=settings.view_saturation_seconds,
        decay_half_life_days=settings.decay_half_life_days,
    )


def ingest_config_from(settings: Settings) -> IngestConfig:
    assert settings.rabbitmq_url, "only called when a broker is configured"
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


def create_app(
    settings: Settings,
    *,
    store: InteractionStore | None = None,
    catalog: ProductCatalog | None = None,
) -> FastAPI:
    store = store or open_store(
        settings.store_url, timeout_ms=settings.store_timeout_ms, pool_size=settings.store_pool_size
    )
    catalog = catalog or build_catalog(settings)
    models = ModelHolder()
    watcher = ModelWatcher(models, settings.model_dir, settings.model_poll_seconds)
    service = RecommendationService(
        models,
        store,
        catalog,
        ServiceConfig(
            weighting=weighting_from(settings),
            store_timeout_seconds=settings.store_timeout_ms / 1000,
            # The catalog enforces its own budget; this outer bound only catches a catalog that
            # ignores it, so it must not fire first (a cancelled call counts as a breaker failure).
            catalog_budget_seconds=settings.banking_budget_ms / 1000 + 0.05,
        ),
    )
    jobs = RefreshJobs(settings_env(settings))
    scheduler = RefreshScheduler(jobs, settings.refresh_schedule)
    # Embedded mode with a broker: consume in-process into the same store.
    consumer = (
        InteractionConsumer(ingest_config_from(settings), store) if settings.rabbitmq_url else None
    )
    parts = Components(
        service=service,
        models=models,
        store=store,
        jobs=jobs,
        status=ServiceStatus(models, store, catalog, jobs, consumer),
        versions=ModelVersions(settings.model_dir, models, watcher),
        catalog_search=CatalogSearch(catalog, models),
        sessions=ConsoleSessions(
            settings.api_key,
            settings.console_session_secret,
            settings.console_session_minutes * 60,
            secure_cookie=settings.environment == "production",
        ),
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        evaluation_dir=settings.evaluation_dir,
        consumer=consumer,
    )

    async def start_consumer() -> None:
        """Keep trying until the broker answers; /ready says 'disconnected' meanwhile."""
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=30)):
            with attempt:
                try:
                    await consumer.start()
                except Exception as exc:
                    log.warning("RabbitMQ consumer not started yet: %s", exc)
                    raise

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await store.open()
        except StoreUnavailable as exc:
            # Serve from the model anyway; /ready reports the store until it comes back.
            log.error("interaction store unavailable at start: %s", exc)
        await watcher.check_once()
        watcher.start()
        scheduler.start()
        consuming = asyncio.create_task(start_consumer()) if consumer is not None else None
        try:
            yield
        finally:
            if consuming is not None:
                consuming.cancel()
                await asyncio.gather(consuming, return_exceptions=True)
                await consumer.stop()  # drains the batch in flight into the store
            await scheduler.stop()
            await watcher.stop()
            await catalog.close()
            await store.close()

    app = FastAPI(
        title="FinVerse Recommendation Service",
        version=__version__,
        summary="Personalised, session-based and similar-product recommendations for banking products",
        lifespan=lifespan,
        # /docs is served by `routers.console` from local files (no CDN), under a strict CSP.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.components = parts
    generate_openapi = app.openapi
    app.openapi = lambda: pair_console_session_schemes(generate_openapi())
    install_error_handlers(app)
    # Added innermost first: request id, log and latency → CORS → body limit → admin rate limits
    # → routes.
    app.add_middleware(
        FailedAuthRateLimitMiddleware,
        path_prefixes=("/api/v1/admin", "/console/login"),
        rate=settings.admin_rate_limit,
    )
    app.add_middleware(
        AdminRateLimitMiddleware,
        path_prefixes=("/api/v1/recommendations/refresh-model",),
        rate=settings.admin_rate_limit,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(RequestTelemetryMiddleware)
    app.include_router(health.router)
    app.include_router(recommendations.router)
    app.include_router(interactions.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(console.router)
    app.mount(
        console.CONSOLE_STATIC_URL, StaticFiles(directory=console.STATIC_DIR), name="console-static"
    )
    app.mount(
        console.SWAGGER_STATIC_URL,
        StaticFiles(directory=console.SWAGGER_UI_DIR),
        name="docs-static",
    )
    return app
