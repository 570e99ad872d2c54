from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from finverse_reco.api.dependencies import Components, components
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


# HEAD answers like GET (status and headers, no body): load balancers and uptime checks use it.
# Registered apart and left out of the schema: one route with both methods gives both one
# OpenAPI operation id.
@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=HealthOut, summary="Liveness")
async def health() -> JSONBytesResponse:
    return JSONBytesResponse({"status": "ok"})


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut}},
    summary="Readiness: model loaded, store reachable, broker connected if configured",
)
async def ready(parts: Annotated[Components, Depends(components)]) -> JSONBytesResponse:
    state = await parts.status.readiness()
    body = {
        "ready": state.ready,
        "model_version": state.model_version,
        "policy_version": parts.service.policy.version,
        "checks": state.checks,
        "model_refusal": state.model_refusal,
    }
    return JSONBytesResponse(body, status_code=200 if state.ready else 503)
