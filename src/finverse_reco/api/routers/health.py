from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends

from finverse_reco.api.dependencies import Components, components
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import HealthOut, ReadyOut
from finverse_reco.store import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness")
async def health() -> JSONBytesResponse:
    return JSONBytesResponse({"status": "ok"})


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut}},
    summary="Readiness: model loaded, store reachable, broker connected if configured",
)
async def ready(parts: Annotated[Components, Depends(components)]) -> JSONBytesResponse:
    checks = {}
    checks["model"] = (
        f"ok: {parts.models.version}" if parts.models.index is not None else "no model loaded"
    )
    try:
        await asyncio.wait_for(parts.store.ping(), 2.0)
        checks["store"] = "ok"
    except (StoreUnavailable, TimeoutError) as exc:
        checks["store"] = f"unavailable: {exc or 'timeout'}"
    if parts.consumer is not None:
        checks["broker"] = "ok" if parts.consumer.connected else "disconnected"
    ok = all(v.startswith("ok") for v in checks.values())
    body = {
        "ready": ok,
        "model_version": parts.models.version,
        "checks": checks,
        "model_refusal": parts.models.last_refusal,
    }
    return JSONBytesResponse(body, status_code=200 if ok else 503)
