"""The seed's recommendation endpoints. Thin: validate, call the service, map the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import Field

from finverse_reco import telemetry
from finverse_reco.api.dependencies import (
    Components,
    components,
    recommendation_service,
    require_api_key,
)
from finverse_reco.api.errors import APIError
from finverse_reco.api.parameters import QueryParameters, openapi_parameters, path_id, query
from finverse_reco.api.responses import RECOMMENDATION_ID_HEADER, JSONBytesResponse
from finverse_reco.api.schemas import ErrorOut, RecommendationsOut, RefreshJobOut
from finverse_reco.api.sessions import COOKIE_NAME, CSRF_HEADER
from finverse_reco.events import ID_PATTERN
from finverse_reco.policy import CallerFilters
from finverse_reco.service.recommendations import RecommendationResult
from finverse_reco.store import StoreUnavailable

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])
ERRORS = {
    401: {"model": ErrorOut, "description": "explain=true without the admin key"},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
SegmentValue = Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.:+ -]{1,64}$")]
_ID = ID_PATTERN.strip("^$")
IdList = Annotated[str, Field(max_length=4096, pattern=rf"^{_ID}(,{_ID}){{0,99}}$")]
_NAME = r"[A-Za-z0-9_.:&' -]{1,128}"
NameList = Annotated[str, Field(max_length=2048, pattern=rf"^{_NAME}(,{_NAME}){{0,19}}$")]


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",")) if value else ()


class ListQuery(QueryParameters):
    limit: int = Field(10, ge=1, le=100, description="How many products (1–100)")
    category: IdList | None = Field(None, description="Only these categories (comma-separated)")
    institution: NameList | None = Field(
        None, description="Only these institutions (comma-separated names)"
    )
    exclude: IdList | None = Field(None, description="Never these product ids (comma-separated)")
    only: IdList | None = Field(
        None, description="Only among these product ids (comma-separated allow-list)"
    )
    explain: bool = Field(
        False, description="Admin (X-API-Key): also list what the policy filtered and why"
    )

    def caller_filters(self) -> CallerFilters:
        return CallerFilters(
            categories=_split(self.category),
            institutions=_split(self.institution),
            only=_split(self.only),
            exclude=_split(self.exclude),
        )


class ChannelQuery(ListQuery):
    channel: Annotated[str, Field(max_length=64, pattern=ID_PATTERN)] | None = Field(
        None, description="Where the list will be shown (contact limits scoped to a channel)"
    )


class SimilarQuery(ChannelQuery):
    user_id: Annotated[str, Field(max_length=128, pattern=ID_PATTERN)] | None = Field(
        None,
        description="The customer the list is for: their profile, contact limits and dismissals",
    )


class UserQuery(ChannelQuery):
    exclude_seen: bool = Field(True, description="Leave out products the user has interacted with")
    age_group: SegmentValue | None = Field(None, description="For a new user: their age group")
    income_range: SegmentValue | None = Field(None, description="For a new user: income range")
    location: SegmentValue | None = Field(None, description="For a new user: their location")

    def demographics(self) -> dict[str, str] | None:
        given = {
            "age_group": self.age_group,
            "income_range": self.income_range,
            "location": self.location,
        }
        return {key: value for key, value in given.items() if value} or None


def _body(
    request: Request, result: RecommendationResult, subject: str, subject_id: str
) -> JSONBytesResponse:
    telemetry.count_recommendation(subject, result.strategy.value, degraded=result.degraded)
    recommendation_id = request.app.state.components.audit.record(result, **{subject: subject_id})
    items = [
        {
            "id": product_id,
            "name": product.name,
            "category": product.category,
            "institution": product.institution,
            "relevanceScore": relevance,
            "score": score,
            "rank": rank,
            "reason": reason,
        }
        for rank, (product_id, product, score, relevance, reason) in enumerate(
            zip(
                result.product_ids,
                result.products,
                result.scores,
                result.relevance,
                result.reasons,
                strict=True,
            ),
            start=1,
        )
    ]
    if result.contributions is not None:  # asked for with `explain`
        for item, parts in zip(items, result.contributions, strict=True):
            item["contributions"] = [part.to_dict() for part in parts]
    body = {
        "recommendation_id": recommendation_id,
        "recommendations": items,
        subject: subject_id,
        "timestamp": result.timestamp.isoformat().replace("+00:00", "Z"),
        "model_version": result.model_version,
        "strategy": result.strategy.value,
        "degraded": result.degraded,
        "policy_version": result.policy_version,
        "experiment": (
            None
            if result.experiment is None
            else {"id": result.experiment.experiment, "arm": result.experiment.arm.name}
        ),
    }
    if result.explanation is not None:
        body["explain"] = result.explanation
    return JSONBytesResponse(body, headers={RECOMMENDATION_ID_HEADER: recommendation_id})


def _checked(request: Request, options: ListQuery) -> ListQuery:
    """`explain=true` is for admins: the key (or a console session) is checked only then."""
    if options.explain:
        parts = components(request)
        require_api_key(
            parts,
            request.headers.get("X-API-Key"),
            request.cookies.get(COOKIE_NAME),
            request.headers.get(CSRF_HEADER),
        )
    return options


# These three take `request` alone and parse it with `parameters` (see there for why): the
# parameters are still validated and published in the OpenAPI schema, from one model each.


@router.get(
    "/products/{user_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Personalised recommendations for a user",
    openapi_extra=openapi_parameters(UserQuery, {"user_id": "The user id"}),
)
async def for_user(request: Request) -> JSONBytesResponse:
    user_id = path_id(request, "user_id")
    options = _checked(request, query(request, UserQuery))
    result = await recommendation_service(request).for_user(
        user_id,
        options.limit,
        caller=options.caller_filters(),
        exclude_seen=options.exclude_seen,
        demographics=options.demographics(),
        explain=options.explain,
        channel=options.channel,
    )
    return _body(request, result, "user_id", user_id)


@router.get(
    "/session/{session_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Recommendations for a browsing session, from its interactions so far",
    openapi_extra=openapi_parameters(ChannelQuery, {"session_id": "The session id"}),
)
async def for_session(request: Request) -> JSONBytesResponse:
    session_id = path_id(request, "session_id")
    options = _checked(request, query(request, ChannelQuery))
    result = await recommendation_service(request).for_session(
        session_id,
        options.limit,
        caller=options.caller_filters(),
        explain=options.explain,
        channel=options.channel,
    )
    return _body(request, result, "session_id", session_id)


@router.get(
    "/similar-products/{product_id}",
    response_model=RecommendationsOut,
    responses=ERRORS,
    summary="Products similar to a product",
    openapi_extra=openapi_parameters(SimilarQuery, {"product_id": "The product id"}),
)
async def similar_products(request: Request) -> JSONBytesResponse:
    product_id = path_id(request, "product_id")
    options = _checked(request, query(request, SimilarQuery))
    result = await recommendation_service(request).similar_products(
        product_id,
        options.limit,
        caller=options.caller_filters(),
        user_id=options.user_id,
        explain=options.explain,
        channel=options.channel,
    )
    return _body(request, result, "product_id", product_id)


@router.post(
    "/refresh-model",
    status_code=202,
    response_model=RefreshJobOut,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    dependencies=[Depends(require_api_key)],
    summary="Admin: retrain now (one training at a time; a running job is returned, not repeated)",
)
async def refresh_model(parts: Annotated[Components, Depends(components)]) -> JSONBytesResponse:
    try:
        job, _started = await parts.jobs.start("api")
    except StoreUnavailable as exc:
        raise APIError(503, f"the job could not be recorded: {exc}") from None
    return JSONBytesResponse(job.to_dict(), status_code=202)


@router.get(
    "/refresh-model/{job_id}",
    response_model=RefreshJobOut,
    responses={
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
        429: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    dependencies=[Depends(require_api_key)],
    summary="Admin: the state of a refresh job",
)
async def refresh_job(
    parts: Annotated[Components, Depends(components)],
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
) -> JSONBytesResponse:
    try:
        job = await parts.jobs.get(job_id)
    except StoreUnavailable as exc:
        raise APIError(503, f"the job records are unavailable: {exc}") from None
    if job is None:
        raise APIError(404, f"no refresh job {job_id}")
    return JSONBytesResponse(job.to_dict())
