"""The HTTP app: settings in, a ready FastAPI app out (its parts come from `compose.py`)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from tenacity import AsyncRetrying, wait_exponential

from finverse_reco import __version__, compose
from finverse_reco.api import metrics
from finverse_reco.api.dependencies import Components, pair_console_session_schemes
from finverse_reco.api.errors import install_error_handlers
from finverse_reco.api.middleware import (
    AdminRateLimitMiddleware,
    BodySizeLimitMiddleware,
    FailedAuthRateLimitMiddleware,
    RequestTelemetryMiddleware,
)
from finverse_reco.api.responses import RECOMMENDATION_ID_HEADER
from finverse_reco.api.routers import (
    admin,
    audit,
    console,
    customers,
    experiments,
    health,
    interactions,
    privacy,
    recommendations,
    stats,
)
from finverse_reco.api.sessions import ConsoleSessions
from finverse_reco.catalog.base import ProductCatalog
from finverse_reco.ingest import InteractionConsumer
from finverse_reco.observability import configure_logging
from finverse_reco.service.audit import AuditTrail
from finverse_reco.service.catalog_search import CatalogSearch
from finverse_reco.service.erasure import CustomerErasure, ErasureWatcher
from finverse_reco.service.model_versions import ModelVersions
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.recommendations import RecommendationService
from finverse_reco.service.refresh import RefreshJobs, RefreshScheduler
from finverse_reco.service.status import ServiceStatus
from finverse_reco.settings import Settings, load_settings, settings_env
from finverse_reco.store import InteractionStore, StoreUnavailable

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    store: InteractionStore | None = None,
    catalog: ProductCatalog | None = None,
) -> FastAPI:
    store = store or compose.store(settings, "serving")
    catalog = catalog or compose.catalog(settings)
    models = ModelHolder()
    artifacts = compose.artifact_store(settings)
    coordination = compose.coordination(settings, "serving")
    watcher = compose.model_watcher(settings, models, artifacts)
    erased = compose.erased_customers(settings)
    erasure_watcher = ErasureWatcher(store, erased, settings.model_poll_seconds)
    policy = compose.policy(settings)
    running_experiments = compose.experiments(settings, watcher, policy)
    service = RecommendationService(
        models,
        store,
        catalog,
        compose.service_config(settings),
        policy,
        experiments=running_experiments.registry,
        erased=erased,
    )
    audit_trail = AuditTrail(store, compose.audit_config(settings), erased)
    jobs = RefreshJobs(settings_env(settings), coordination)
    scheduler = RefreshScheduler(jobs, settings.refresh_schedule)
    # Embedded mode with a broker: consume in-process into the same store.
    admission = compose.event_admission(settings, catalog, store, erased)
    consumer = (
        InteractionConsumer(compose.ingest_config(settings), store, admission)
        if settings.rabbitmq_url
        else None
    )
    parts = Components(
        service=service,
        models=models,
        store=store,
        jobs=jobs,
        status=ServiceStatus(models, store, catalog, jobs, consumer),
        versions=ModelVersions(artifacts, models, watcher, settings.model_dir),
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
        experiments=running_experiments,
        online=compose.online_stats(settings, store, models),
        consumer=consumer,
        admission=admission,
        audit=audit_trail,
        erasure=CustomerErasure(store, erased, audit_trail),
        writer_keys=tuple(settings.writer_api_keys),
        writer_hmac_secret=settings.writer_hmac_secret,
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
        for shared in (artifacts, coordination):
            try:
                await shared.open()
            except StoreUnavailable as exc:  # their calls fail (503) until it answers
                log.error("%r unavailable at start: %s", shared, exc)
        await watcher.check_once()
        watcher.start()
        await erasure_watcher.check_once()
        erasure_watcher.start()
        await running_experiments.sync()
        polling = asyncio.create_task(running_experiments.run(settings.model_poll_seconds))
        scheduler.start()
        audit_trail.start()
        consuming = asyncio.create_task(start_consumer()) if consumer is not None else None
        try:
            yield
        finally:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            if consuming is not None:
                consuming.cancel()
                await asyncio.gather(consuming, return_exceptions=True)
                await consumer.stop()  # drains the batch in flight into the store
            await scheduler.stop()
            await watcher.stop()
            await erasure_watcher.stop()
            await audit_trail.stop()  # before the store closes: writes what is buffered
            await catalog.close()
            await coordination.close()
            await artifacts.close()
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
        path_prefixes=(
            "/api/v1/admin",
            "/api/v1/audit",
            "/api/v1/customers",
            "/api/v1/stats",
            "/console/login",
        ),
        rate=settings.admin_rate_limit,
    )
    # Starting a training and polling its state are limited separately: an operator polling a
    # running job must not use up the allowance for starting one, nor be locked out by it.
    app.add_middleware(
        AdminRateLimitMiddleware,
        namespace="admin-action",
        path_prefixes=("/api/v1/recommendations/refresh-model",),
        methods=("POST",),
        rate=settings.admin_rate_limit,
    )
    app.add_middleware(
        AdminRateLimitMiddleware,
        namespace="admin-read",
        path_prefixes=("/api/v1/recommendations/refresh-model/",),
        methods=("GET", "HEAD"),
        rate=settings.admin_read_rate_limit,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "X-Signature", "Content-Type", "X-Request-ID"],
            expose_headers=[RECOMMENDATION_ID_HEADER],
        )
    app.add_middleware(RequestTelemetryMiddleware)
    app.include_router(health.router)
    app.include_router(recommendations.router)
    app.include_router(interactions.router)
    app.include_router(customers.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    app.include_router(privacy.router)
    app.include_router(experiments.router)
    app.include_router(stats.router)
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


def create_app_from_environment() -> FastAPI:
    """The app of one `serve --workers N` worker: it reads the same environment as its parent."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
