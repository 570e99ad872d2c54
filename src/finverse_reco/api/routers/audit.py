"""Admin: the audit trail, what each served list showed (docs/ACCOUNTABILITY.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from finverse_reco.api.dependencies import (
    ADMIN_ERRORS,
    Components,
    components,
    require_api_key,
)
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import AuditRecordOut, AuditRecordsOut, ErrorOut
from finverse_reco.audit import RECOMMENDATION_ID_PATTERN
from finverse_reco.events import ID_PATTERN
from finverse_reco.store import StoreUnavailable

router = APIRouter(
    prefix="/api/v1/audit",
    tags=["audit"],
    dependencies=[Depends(require_api_key)],
    responses={
        **ADMIN_ERRORS,
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
Parts = Annotated[Components, Depends(components)]


@router.get(
    "/recommendations/{recommendation_id}",
    response_model=AuditRecordOut,
    responses={404: {"model": ErrorOut}},
    summary="Admin: the audit record of one served list",
)
async def recommendation_record(
    parts: Parts,
    recommendation_id: Annotated[
        str, Path(pattern=RECOMMENDATION_ID_PATTERN, description="From X-Recommendation-ID")
    ],
) -> JSONBytesResponse:
    try:
        record = await parts.audit.find(recommendation_id)
    except StoreUnavailable as exc:
        raise APIError(503, f"the store is unavailable: {exc}") from None
    if record is None:
        raise APIError(404, f"no audit record {recommendation_id}")
    return JSONBytesResponse(record.to_json())


@router.get(
    "/customers/{user_id}",
    response_model=AuditRecordsOut,
    summary="Admin: the lists served to a customer, newest first",
)
async def customer_records(
    parts: Parts,
    user_id: Annotated[str, Path(pattern=ID_PATTERN, description="The customer (user) id")],
    since: Annotated[
        datetime | None, Query(description="Only lists served at or after this time (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many (1–1000)")] = 100,
) -> JSONBytesResponse:
    if since is not None and since.tzinfo is None:
        raise APIError(422, "since needs a time zone, e.g. 2026-01-01T00:00:00Z")
    try:
        records = await parts.audit.for_customer(user_id, since, limit)
    except StoreUnavailable as exc:
        raise APIError(503, f"the store is unavailable: {exc}") from None
    return JSONBytesResponse({"user_id": user_id, "records": [r.to_json() for r in records]})
