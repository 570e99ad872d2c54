"""Admin: online metrics of the served lists, from the store's events (docs/FEEDBACK.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from finverse_reco.api.dependencies import Components, components, require_api_key
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ErrorOut, OnlineStatsOut
from finverse_reco.service.online_stats import DIMENSIONS
from finverse_reco.store import StoreUnavailable

router = APIRouter(
    prefix="/api/v1/stats",
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorOut, "description": "No valid admin key or console session"},
        429: {"model": ErrorOut, "description": "Too many failed authentications"},
    },
)
Parts = Annotated[Components, Depends(components)]
DEFAULT_PERIOD = timedelta(days=1)
MAX_PERIOD = timedelta(days=92)


@router.get(
    "/online",
    response_model=OnlineStatsOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="Admin: impressions, clicks, applications, dismissals and their rates, by group",
)
async def online(
    parts: Parts,
    since: Annotated[
        datetime | None, Query(description="Impressions from (default: a day before until)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Impressions before (default: now)")
    ] = None,
    by: Annotated[
        str,
        Query(
            max_length=200,
            description=f"Comma-separated dimensions, from {', '.join(DIMENSIONS)}",
        ),
    ] = "arm",
) -> JSONBytesResponse:
    until = _utc(until) if until is not None else datetime.now(UTC)
    since = _utc(since) if since is not None else until - DEFAULT_PERIOD
    if not since < until or until - since > MAX_PERIOD:
        raise APIError(422, f"since must be before until, at most {MAX_PERIOD.days} days apart")
    dimensions = [name.strip() for name in by.split(",") if name.strip()]
    unknown = sorted(set(dimensions) - set(DIMENSIONS))
    if unknown or not dimensions:
        raise APIError(422, f"by: unknown {unknown}; choose from {', '.join(DIMENSIONS)}")
    try:
        return JSONBytesResponse(await parts.online.report(since, until, dimensions))
    except StoreUnavailable as exc:
        raise APIError(503, f"the store cannot answer: {exc}") from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
