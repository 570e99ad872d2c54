"""Admin: a customer's rights over their data — erasure (docs/ACCOUNTABILITY.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from finverse_reco.api.dependencies import (
    ADMIN_ERRORS,
    Components,
    components,
    require_api_key,
)
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ErasureReceiptOut, ErrorOut
from finverse_reco.events import ID_PATTERN
from finverse_reco.store import StoreUnavailable

router = APIRouter(
    prefix="/api/v1/customers",
    tags=["privacy"],
    dependencies=[Depends(require_api_key)],
    responses={
        **ADMIN_ERRORS,
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
Parts = Annotated[Components, Depends(components)]
CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer (user) id")]


@router.delete(
    "/{user_id}",
    response_model=ErasureReceiptOut,
    summary="Admin: erase a customer (GDPR Art. 17); idempotent, returns a receipt",
)
async def erase_customer(parts: Parts, user_id: CustomerId) -> JSONBytesResponse:
    try:
        return JSONBytesResponse(await parts.erasure.erase(user_id))
    except StoreUnavailable as exc:
        raise APIError(503, f"the store is unavailable, nothing is known erased: {exc}") from None
