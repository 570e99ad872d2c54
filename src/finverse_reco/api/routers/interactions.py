"""Embedded ingestion: the same validation as the RabbitMQ consumer, one event or a batch."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request

from finverse_reco import telemetry
from finverse_reco.api.dependencies import Components, components, require_writer
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ErrorOut, IngestOut
from finverse_reco.catalog.base import CatalogUnavailable
from finverse_reco.events import InvalidEvent, parse_event
from finverse_reco.store import EventsRefused, StoreUnavailable

router = APIRouter(prefix="/api/v1", tags=["interactions"])

MAX_BATCH = 1000
EXAMPLE = {
    "user_id": "user_00001",
    "session_id": "sess_demo_1",
    "type": "product_view",
    "timestamp": "2026-11-27T12:00:00Z",
    "data": {"productId": "prod_0001", "viewDuration": 42.5},
}


@router.post(
    "/interactions",
    status_code=202,
    response_model=IngestOut,
    responses={
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        413: {"model": ErrorOut},
        415: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    dependencies=[Depends(require_writer)],
    summary="Record one interaction event or a batch (a JSON array, at most 1000); writers only",
    # The body is parsed by hand below so every event gets exactly the validation (and messages)
    # the RabbitMQ consumer applies; this only documents it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "object"},
                            {"type": "array", "items": {"type": "object"}, "maxItems": MAX_BATCH},
                        ]
                    },
                    "example": EXAMPLE,
                }
            },
        }
    },
)
async def record_interactions(
    request: Request, parts: Annotated[Components, Depends(components)]
) -> JSONBytesResponse:
    # Only JSON: a text/plain POST is a CORS "simple request" any web page can send.
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise APIError(415, "the body must be application/json")
    body = await request.body()
    if len(body) > parts.max_body_bytes:
        raise APIError(413, f"body is larger than {parts.max_body_bytes} bytes")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"malformed JSON: {exc}") from None
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise APIError(422, "an empty batch")
    if len(items) > MAX_BATCH:
        raise APIError(422, f"a batch holds at most {MAX_BATCH} events, got {len(items)}")
    events, rejected = [], []
    rules = parts.admission.rules
    for position, item in enumerate(items):
        try:
            events.append(parse_event(item, rules).enriched(queue_source="http"))
        except InvalidEvent as exc:
            rejected.append({"index": position, "reason": exc.reason})
    if not rejected:
        try:
            unknown = await parts.admission.unknown_products(events)
        except CatalogUnavailable as exc:
            raise APIError(503, f"the catalog cannot check the products: {exc}") from None
        rejected = [{"index": position, "reason": reason} for position, reason in unknown]
    if rejected:
        telemetry.INGESTED_EVENTS.labels("http", "rejected").inc(len(rejected))
        # All or nothing: the client resends the fixed batch; event ids make the resend idempotent.
        raise APIError(422, rejected[0]["reason"], code="invalid_event", details=rejected)
    try:
        # Erased customers' events are dropped and counted (docs/ACCOUNTABILITY.md).
        erased = await parts.admission.erased_customers(events)
        if erased:
            kept = [event for event in events if event.user_id not in erased]
            dropped, events = len(events) - len(kept), kept
            telemetry.INGESTED_EVENTS.labels("http", "erased").inc(dropped)
        result = await parts.service.record_interactions(events)
    except StoreUnavailable as exc:
        raise APIError(503, f"the interaction store is unavailable: {exc}") from None
    except EventsRefused as exc:
        # The others are stored: the client resends the batch without (or with fixed) refused
        # events, and event ids make the resend idempotent.
        stored = exc.stored
        telemetry.INGESTED_EVENTS.labels("http", "stored").inc(stored.inserted)
        telemetry.INGESTED_EVENTS.labels("http", "duplicate").inc(stored.duplicates)
        telemetry.INGESTED_EVENTS.labels("http", "rejected").inc(len(exc.refused))
        details = [{"index": r.index, "reason": r.reason} for r in exc.refused]
        message = (
            f"the store refused {len(exc.refused)} event(s), e.g. {exc.refused[0].reason}; "
            f"the other {stored.inserted + stored.duplicates} are stored"
        )
        raise APIError(422, message, code="refused_by_store", details=details) from None
    telemetry.INGESTED_EVENTS.labels("http", "stored").inc(result.inserted)
    telemetry.INGESTED_EVENTS.labels("http", "duplicate").inc(result.duplicates)
    body = {"accepted": result.inserted, "duplicates": result.duplicates}
    if erased:
        body["dropped_erased"] = dropped
    return JSONBytesResponse(body, status_code=202)
