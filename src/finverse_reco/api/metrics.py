"""The `/metrics` endpoint. The metric objects are in `telemetry`; the request-latency histogram is
observed by `middleware.RequestTelemetryMiddleware`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from finverse_reco import telemetry

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    models = request.app.state.components.models
    telemetry.observe_model(models.version, models.loaded_at)
    return Response(telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)
