"""The `/metrics` endpoint. The metric objects are in `telemetry`; the request-latency histogram is
observed by `middleware.RequestTelemetryMiddleware`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from finverse_reco import telemetry
from finverse_reco.store import StoreUnavailable

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    parts = request.app.state.components
    telemetry.observe_model(parts.models.version, parts.models.loaded_at)
    try:
        telemetry.observe_online(await parts.online.per_dimension(datetime.now(UTC)))
    except StoreUnavailable as exc:
        # The other metrics still matter most when the store is down; the online ones keep
        # their last values.
        log.warning("online metrics not refreshed: %s", exc)
    return Response(telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)
