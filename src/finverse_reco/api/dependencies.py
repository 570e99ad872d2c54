"""What routers receive, built once in `create_app` and kept on `app.state`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from finverse_reco.api.errors import APIError
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.recommendations import RecommendationService
from finverse_reco.service.refresh import RefreshJobs
from finverse_reco.store import InteractionStore


@dataclass(slots=True)
class Components:
    service: RecommendationService
    models: ModelHolder
    store: InteractionStore
    jobs: RefreshJobs
    api_key: str
    max_body_bytes: int
    consumer: object | None = None  # the in-process RabbitMQ consumer, when configured


def components(request: Request) -> Components:
    return request.app.state.components


def recommendation_service(request: Request) -> RecommendationService:
    return request.app.state.components.service


def require_api_key(
    parts: Annotated[Components, Depends(components)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    # compare_digest: the time taken must not reveal how much of the key matched
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), parts.api_key.encode()):
        raise APIError(401, "a valid X-API-Key header is required")
