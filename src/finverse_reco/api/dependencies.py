"""What routers receive, built once in `create_app` and kept on `app.state`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader

from finverse_reco.api.errors import APIError
from finverse_reco.api.sessions import COOKIE_NAME, CSRF_HEADER, ConsoleSessions
from finverse_reco.ingest import InteractionConsumer
from finverse_reco.service.catalog_search import CatalogSearch
from finverse_reco.service.experiments import Experiments
from finverse_reco.service.model_versions import ModelVersions
from finverse_reco.service.models import ModelHolder
from finverse_reco.service.online_stats import OnlineStats
from finverse_reco.service.recommendations import RecommendationService
from finverse_reco.service.refresh import RefreshJobs
from finverse_reco.service.status import ServiceStatus
from finverse_reco.store import InteractionStore


@dataclass(slots=True)
class Components:
    service: RecommendationService
    models: ModelHolder
    store: InteractionStore
    jobs: RefreshJobs
    status: ServiceStatus
    versions: ModelVersions
    catalog_search: CatalogSearch
    sessions: ConsoleSessions
    api_key: str
    max_body_bytes: int
    evaluation_dir: Path
    experiments: Experiments
    online: OnlineStats
    consumer: InteractionConsumer | None = None  # the in-process RabbitMQ consumer, if configured


def components(request: Request) -> Components:
    return request.app.state.components


def recommendation_service(request: Request) -> RecommendationService:
    return request.app.state.components.service


# Published as the admin endpoints' security schemes; checked together in `require_api_key`.
admin_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="AdminKey",
    description="The admin key (FINVERSE_API_KEY).",
    auto_error=False,
)
console_cookie = APIKeyCookie(
    name=COOKIE_NAME,
    scheme_name="ConsoleSession",
    description="The operator console's session cookie (from its login form). Counts only "
    f"together with the session's CSRF token in the {CSRF_HEADER} header.",
    auto_error=False,
)
console_csrf_header = APIKeyHeader(
    name=CSRF_HEADER,
    scheme_name="ConsoleCsrf",
    description="The console session's CSRF token; required with the session cookie.",
    auto_error=False,
)


def require_api_key(
    parts: Annotated[Components, Depends(components)],
    api_key: Annotated[str | None, Depends(admin_key_header)],
    session_cookie: Annotated[str | None, Depends(console_cookie)],
    csrf_token: Annotated[str | None, Depends(console_csrf_header)],
) -> None:
    """The admin credential: the `X-API-Key` header, or a console session cookie together with its
    `X-CSRF-Token` header. A key, when sent, decides alone."""
    if api_key is not None:
        # compare_digest: the time taken must not reveal how much of the key matched
        if hmac.compare_digest(api_key.encode(), parts.api_key.encode()):
            return
        raise APIError(401, "a valid X-API-Key header is required")
    session = parts.sessions.verify(session_cookie)
    if session is None:
        raise APIError(401, "a valid X-API-Key header or console session is required")
    if not parts.sessions.csrf_matches(session, csrf_token):
        raise APIError(
            403, f"a console session needs its {CSRF_HEADER} header", code="csrf_token_invalid"
        )


def pair_console_session_schemes(schema: dict) -> dict:
    """FastAPI lists each security dependency as an alternative; a console session is the cookie
    AND its CSRF header, so the schema says exactly that."""
    cookie, csrf = console_cookie.scheme_name, console_csrf_header.scheme_name
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            alternatives = operation.get("security")
            if alternatives and {cookie: []} in alternatives and {csrf: []} in alternatives:
                operation["security"] = [
                    *(a for a in alternatives if a not in ({cookie: []}, {csrf: []})),
                    {cookie: [], csrf: []},
                ]
    return schema
