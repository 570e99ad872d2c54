"""Customer profiles (admin): what the bank tells the service of a customer besides behaviour, and
their consent to personalisation. Thin: the body is validated by `customers.parse_profile`, the one
validator RabbitMQ's `customer_profile` messages go through too, or `customers.parse_consent`."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Request

from finverse_reco.api.dependencies import Components, components, require_api_key
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ConsentIn, CustomerProfileIn, CustomerProfileOut, ErrorOut
from finverse_reco.customers import CustomerProfile, parse_consent, parse_profile
from finverse_reco.events import ID_PATTERN, InvalidEvent
from finverse_reco.store import StoreUnavailable

router = APIRouter(
    prefix="/api/v1/customers",
    tags=["customers"],
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorOut, "description": "No valid admin key or console session"},
        403: {"model": ErrorOut, "description": "A console session without its CSRF token"},
        422: {"model": ErrorOut},
        429: {"model": ErrorOut, "description": "Too many failed authentications"},
        503: {"model": ErrorOut},
    },
)
Parts = Annotated[Components, Depends(components)]
CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer (user) id")]
EXAMPLE = {
    "birth_year": 1990,
    "annual_income": 58000,
    "income_range": "50k-75k",
    "residency": "US",
    "region": "midwest",
    "risk_profile": 3,
    "kyc_status": "verified",
    "holdings": ["prod_0012"],
    "updated_at": "2026-11-27T12:00:00Z",
}


def _profile_out(profile: CustomerProfile) -> dict[str, object]:
    return profile.model_dump(mode="json")


@router.put(
    "/{user_id}/profile",
    response_model=CustomerProfileOut,
    responses={400: {"model": ErrorOut}, 409: {"model": ErrorOut}, 413: {"model": ErrorOut}},
    summary="Admin: store a customer's profile (replaced whole; an older updated_at is refused)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": CustomerProfileIn.model_json_schema(),
                    "example": EXAMPLE,
                }
            },
        }
    },
)
async def put_profile(request: Request, parts: Parts, user_id: CustomerId) -> JSONBytesResponse:
    try:
        profile = parse_profile(await _json_body(request, parts), user_id=user_id)
    except InvalidEvent as exc:
        raise APIError(422, exc.reason) from None
    try:
        stored = await parts.store.put_profile(profile)
    except StoreUnavailable as exc:
        raise APIError(503, f"the interaction store is unavailable: {exc}") from None
    if not stored:
        raise APIError(409, "a profile with a newer updated_at is stored; nothing changed")
    return JSONBytesResponse(_profile_out(profile))


@router.get(
    "/{user_id}/profile",
    response_model=CustomerProfileOut,
    responses={404: {"model": ErrorOut}},
    summary="Admin: a customer's stored profile",
)
async def get_profile(parts: Parts, user_id: CustomerId) -> JSONBytesResponse:
    try:
        profile = await parts.store.get_profile(user_id)
    except StoreUnavailable as exc:
        raise APIError(503, f"the interaction store is unavailable: {exc}") from None
    if profile is None:
        raise APIError(404, f"no profile for customer {user_id!r}")
    return JSONBytesResponse(_profile_out(profile))


@router.put(
    "/{user_id}/consent",
    response_model=CustomerProfileOut,
    responses={
        400: {"model": ErrorOut},
        404: {"model": ErrorOut, "description": "The customer was erased meanwhile"},
        409: {"model": ErrorOut},
        413: {"model": ErrorOut},
    },
    summary="Admin: record the customer's consent to personalisation (false: they object; "
    "an older updated_at than the stored profile's is refused)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ConsentIn.model_json_schema(),
                    "example": {"personalisation": False, "updated_at": "2026-11-28T09:00:00Z"},
                }
            },
        }
    },
)
async def put_consent(request: Request, parts: Parts, user_id: CustomerId) -> JSONBytesResponse:
    try:
        change = parse_consent(await _json_body(request, parts))
    except InvalidEvent as exc:
        raise APIError(422, exc.reason) from None
    try:
        stored = await parts.store.put_consent(user_id, change.personalisation, change.updated_at)
        profile = await parts.store.get_profile(user_id) if stored else None
    except StoreUnavailable as exc:
        raise APIError(503, f"the interaction store is unavailable: {exc}") from None
    if not stored:
        raise APIError(409, "a profile with a newer updated_at is stored; nothing changed")
    if profile is None:  # erased between the two calls
        raise APIError(404, f"no profile for customer {user_id!r}")
    return JSONBytesResponse(_profile_out(profile))


async def _json_body(request: Request, parts: Components) -> object:
    body = await request.body()
    if len(body) > parts.max_body_bytes:
        raise APIError(413, f"body is larger than {parts.max_body_bytes} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"malformed JSON: {exc}") from None
