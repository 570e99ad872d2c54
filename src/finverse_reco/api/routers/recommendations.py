"""The seed's recommendation endpoints. Thin: validate, call the service, map the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from finverse_reco import telemetry
from finverse_reco.api.dependencies import (
    Components,
    components,
    recommendation_service,
    require_api_key,
)
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ErrorOut, RecommendationsOut, RefreshJobOut
from finverse_reco.events import ID_PATTERN
from finverse_reco.service.recommendations import RecommendationResult, RecommendationService
from finverse_reco.service.refresh import RefreshJob

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])


async def _service(request: Request) -> RecommendationService:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop per request that
    # cost more than ranking a 1,000-item catalog (bench/serving.py).
    return recommendation_service(request)


Service = Annotated[RecommendationService, Depends(_service)]
Limit = Annotated[int, Query(ge=1, le=100, description="How many products (1–100)")]
Category = Annotated[
    str | None, Query(max_length=64, pattern=ID_PATTERN, description="Only this category")
]
Segment = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:+ -]{1,64}$")]
ERRORS = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def _id(kind: str):
    return Path(pattern=ID_PATTERN, max_length=128, description=f"The {kind} id")


def _body(result: RecommendationResult, subject: str, subject_id: str) -> JSONBytesResponse:
    telemetry.RECOMMENDATIONS.labels(subject, result.strategy.value).inc()
    if result.degraded:
        telemetry.DEGRADED.inc()
    return JSONBytesResponse(
        {
            "recommendations": [
                {
                    "id": r.id,
                    "name": r.name,
                    "category": r.category,
                    "institution": r.institution,
                    "relevanceScore": r.relevance_score,
                    "rank": r.rank,
                    "reason": r.reason,
                }
                for r in result.recommendations
            ],
            subject: subject_id,
            "timestamp": result.timestamp.isoformat().replace("+00:00", "Z"),
            "model_version": result.model_version,
            "strategy": result.strategy.value,
            "degraded": result.degraded,
        }
    )


@router.get(
    "/products/{user_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Personalised recommendations for a user",
)
async def for_user(
    service: Service,
    user_id: Annotated[str, _id("user")],
    limit: Limit = 10,
    category: Category = None,
    exclude_seen: bool = True,
    age_group: Segment = None,
    income_range: Segment = None,
    location: Segment = None,
) -> JSONBytesResponse:
    demographics = {
        k: v
        for k, v in {
            "age_group": age_group,
            "income_range": income_range,
            "location": location,
        }.items()
        if v
    }
    result = await service.for_user(
        user_id,
        limit,
        category=category,
        exclude_seen=exclude_seen,
        demographics=demographics or None,
    )
    return _body(result, "user_id", user_id)


@router.get(
    "/session/{session_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations for a browsing session, from its interactions so far",
)
async def for_session(
    service: Service,
    session_id: Annotated[str, _id("session")],
    limit: Limit = 10,
    category: Category = None,
) -> JSONBytesResponse:
    result = await service.for_session(session_id, limit, category=category)
    return _body(result, "session_id", session_id)


@router.get(
    "/similar-products/{product_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Products similar to a product",
)
async def similar_products(
    service: Service,
    product_id: Annotated[str, _id("product")],
    limit: Limit = 10,
    category: Category = None,
) -> JSONBytesResponse:
    result = await service.similar_products(product_id, limit, category=category)
    return _body(result, "product_id", product_id)


def _job(job: RefreshJob, status: int) -> JSONBytesResponse:
    return JSONBytesResponse(
        {
            "job_id": job.id,
            "state": job.state.value,
            "trigger": job.trigger,
            "started_at": job.started_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "detail": job.detail,
        },
        status_code=status,
    )


@router.post(
    "/refresh-model",
    status_code=202,
    response_model=RefreshJobOut,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
    dependencies=[Depends(require_api_key)],
    summary="Admin: retrain now (one training at a time; a running job is returned, not repeated)",
)
async def refresh_model(parts: Annotated[Components, Depends(components)]) -> JSONBytesResponse:
    job, _started = parts.jobs.start("api")
    return _job(job, 202)


@router.get(
    "/refresh-model/{job_id}",
    response_model=RefreshJobOut,
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 429: {"model": ErrorOut}},
    dependencies=[Depends(require_api_key)],
    summary="Admin: the state of a refresh job",
)
async def refresh_job(
    parts: Annotated[Components, Depends(components)],
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
) -> JSONBytesResponse:
    job = parts.jobs.get(job_id)
    if job is None:
        raise APIError(404, f"no refresh job {job_id}")
    return _job(job, 200)
