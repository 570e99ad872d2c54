"""Pure ASGI middlewares (no BaseHTTPMiddleware): request id, access log and latency histogram,
body-size limit, and a rate limit on the admin endpoints. Each answers refusals in the API's JSON error format."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finverse_reco import telemetry
from finverse_reco.api.errors import error_response
from finverse_reco.observability import REQUEST_ID_HEADER, current_request_id, request_id_from

access_log = logging.getLogger("finverse_reco.access")

# Probes hit these every few seconds; their access lines are debug noise.
_PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
_MAX_LOGGED_PATH = 256


class RequestTelemetryMiddleware:
    """Takes a well-formed `X-Request-ID` or makes one, returns it on the response, puts it in every
    log line of the request, writes one access line (method, path, route, status, duration) and
    observes the latency histogram by route and status: one timing per request for both.
    The query string is never logged (it may hold demographics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        # Not reset afterwards on purpose: each request runs in its own task (its own context), and
        # the 500 handler, which runs outside this middleware, must still log with the id.
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        root_path = scope.get("root_path", "")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            if route is None and scope.get("root_path", "") != root_path:
                # A mounted app (the console's static files): the router set its mount path.
                route = f"{scope['root_path']}/{{path}}"
            telemetry.REQUEST_LATENCY.labels(
                route or "unmatched", scope["method"], str(status)
            ).observe(seconds)
            path = scope["path"]
            if status >= 500:
                level = logging.ERROR
            elif path in _PROBE_PATHS:
                level = logging.DEBUG
            else:
                level = logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %d",
                    scope["method"],
                    route or "unmatched",
                    status,
                    extra={
                        "method": scope["method"],
                        "path": path[:_MAX_LOGGED_PATH],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit; the app's HTTPException handler
    turns it into the usual JSON 413 (and the middleware does, should it reach it)."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_body_bytes} bytes")


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_body_bytes` with 413: at once when Content-Length says so,
    otherwise as soon as the streamed body passes the limit (chunked uploads cannot slip through)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise RequestBodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than {self.max_body_bytes} bytes"
        await error_response(413, "payload_too_large", message)(scope, receive, send)


class _PerClientRateLimit:
    """A moving-window limit per client address on some paths (`limits`, in memory, so per
    replica). Behind a proxy the client address is the proxy's unless uvicorn trusts its forwarded
    headers."""

    namespace = ""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path_prefixes: Sequence[str],
        rate: str,
        methods: Sequence[str] | None = None,
    ) -> None:
        if not path_prefixes:
            raise ValueError("path_prefixes must name at least one path")
        self.app = app
        self._prefixes = tuple(path_prefixes)
        self._methods = frozenset(methods) if methods is not None else None
        self._rate = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _address(self, scope: Scope) -> str | None:
        """The client address when the limit applies to this request, else None."""
        if scope["type"] != "http" or not scope["path"].startswith(self._prefixes):
            return None
        if self._methods is not None and scope["method"] not in self._methods:
            return None
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def _refuse(self, address: str, scope: Scope, receive: Receive, send: Send) -> None:
        stats = await self._limiter.get_window_stats(self._rate, self.namespace, address)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        response = error_response(
            429,
            "too_many_requests",
            f"too many admin requests; retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)


class AdminRateLimitMiddleware(_PerClientRateLimit):
    """Counts every request on the admin paths (of the given methods). It runs before
    authentication, so it also slows down guessing the API key. One instance per limit: the
    refresh action and the polling of its state count in separate windows (`namespace`)."""

    def __init__(self, app: ASGIApp, *, namespace: str = "admin", **limit: Any) -> None:
        super().__init__(app, **limit)
        self.namespace = namespace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = self._address(scope)
        if address is None or await self._limiter.hit(self._rate, self.namespace, address):
            await self.app(scope, receive, send)
            return
        await self._refuse(address, scope, receive, send)


class FailedAuthRateLimitMiddleware(_PerClientRateLimit):
    """Counts failed authentications (401 answers): past the limit, every request on the paths
    gets 429 until the window moves on. Authenticated requests are never counted, so a console
    polling with its session is not slowed down, while guessing the key or a session is."""

    namespace = "auth-failure"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = self._address(scope)
        if address is None:
            await self.app(scope, receive, send)
            return
        if not await self._limiter.test(self._rate, self.namespace, address):
            await self._refuse(address, scope, receive, send)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watching_send)
        if status == 401:
            await self._limiter.hit(self._rate, self.namespace, address)
