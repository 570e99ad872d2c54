"""The admin API the operator console is built on (and any other operator tool may call): the
service's state, model versions and rollback, a customer's recent events, catalog search and the
latest evaluation report. Every endpoint takes the admin key or a console session (see
`dependencies.require_api_key`)."""

from __future__ import annotations

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
from finverse_reco.api.schemas import (
    ActivationOut,
    CustomerEventsOut,
    ErrorOut,
    EvaluationReportOut,
    ModelVersionsOut,
    OverviewOut,
    ProductSearchOut,
)
from finverse_reco.catalog.base import CatalogUnavailable
from finverse_reco.events import ID_PATTERN
from finverse_reco.model.artifacts import VERSION_RE, ArtifactError
from finverse_reco.service.evaluations import NoEvaluationReport, latest_report
from finverse_reco.service.model_versions import UnknownVersion
from finverse_reco.store import StoreUnavailable

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses=ADMIN_ERRORS,
)
Parts = Annotated[Components, Depends(components)]
CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="The customer (user) id")]
Version = Annotated[str, Path(pattern=VERSION_RE.pattern, description="A model version name")]


@router.get("/overview", response_model=OverviewOut, summary="Admin: the service's state")
async def overview(parts: Parts) -> JSONBytesResponse:
    return JSONBytesResponse(await parts.status.overview())


@router.get(
    "/models",
    response_model=ModelVersionsOut,
    summary="Admin: every model version with its manifest, size and guardrail verdict",
)
async def model_versions(parts: Parts) -> JSONBytesResponse:
    described = await parts.versions.describe()
    running = parts.jobs.running
    return JSONBytesResponse(
        {**described, "refresh_job": running.to_dict() if running is not None else None}
    )


@router.post(
    "/models/{version}/activate",
    response_model=ActivationOut,
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Admin: activate a model version (rollback); it is verified and loaded first",
)
async def activate_version(parts: Parts, version: Version) -> JSONBytesResponse:
    try:
        return JSONBytesResponse(await parts.versions.activate(version))
    except UnknownVersion as exc:
        raise APIError(404, str(exc)) from None
    except ArtifactError as exc:
        raise APIError(409, f"version {version} refused: {exc.reason}") from None


@router.get(
    "/customers/{user_id}/events",
    response_model=CustomerEventsOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="Admin: a customer's most recent interactions, newest first",
)
async def customer_events(
    parts: Parts,
    user_id: CustomerId,
    limit: Annotated[int, Query(ge=1, le=200, description="How many (1–200)")] = 50,
) -> JSONBytesResponse:
    try:
        events = await parts.service.recent_interactions(user_id, limit)
    except StoreUnavailable as exc:
        raise APIError(503, f"the interaction store is unavailable: {exc}") from None
    return JSONBytesResponse(
        {
            "user_id": user_id,
            "events": [event.model_dump(mode="json", exclude_none=True) for event in events],
        }
    )


@router.get(
    "/products",
    response_model=ProductSearchOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="Admin: search the catalog by id, name, category or institution",
)
async def search_products(
    parts: Parts,
    q: Annotated[str, Query(max_length=100, description="Text to look for; empty: all")] = "",
    limit: Annotated[int, Query(ge=1, le=200, description="How many (1–200)")] = 50,
) -> JSONBytesResponse:
    try:
        return JSONBytesResponse(await parts.catalog_search.search(q, limit))
    except CatalogUnavailable as exc:
        raise APIError(503, f"the product catalog is unavailable: {exc}") from None


@router.get(
    "/evaluations/latest",
    response_model=EvaluationReportOut,
    responses={404: {"model": ErrorOut}},
    summary="Admin: the newest offline evaluation report in FINVERSE_EVALUATION_DIR",
)
async def latest_evaluation(parts: Parts) -> JSONBytesResponse:
    try:
        return JSONBytesResponse(await latest_report(parts.evaluation_dir))
    except NoEvaluationReport as exc:
        raise APIError(404, str(exc)) from None
