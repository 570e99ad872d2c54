"""The `/metrics` endpoint and the request-latency middleware. The metric objects are in `telemetry`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finverse_reco import telemetry

# The routers count recommendations through this module; the objects themselves are shared.
RECOMMENDATIONS = telemetry.RECOMMENDATIONS
DEGRADED = telemetry.DEGRADED

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    models = request.app.state.components.models
    telemetry.observe_model(models.version, models.loaded_at)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it adds one histogram observation per request, nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            telemetry.REQUEST_LATENCY.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
