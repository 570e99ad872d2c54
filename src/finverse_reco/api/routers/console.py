"""The operator console at /console, and the API docs at /docs, both working offline.

The pages are server-rendered shells (Jinja2): layout, navigation, forms, and the session's CSRF token.
Every figure on them is fetched by the page's script from the documented admin API, so the console
has no private data path. Login exchanges the admin key for a session cookie (`api/sessions.py`).
Every page and asset comes from this service, under a Content-Security-Policy without inline scripts.
"""

from __future__ import annotations

import hmac
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from finverse_reco import __version__
from finverse_reco.api.dependencies import Components, components
from finverse_reco.api.sessions import COOKIE_NAME, ConsoleSession

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
STATIC_DIR = CONSOLE_DIR / "static"
SWAGGER_UI_DIR = Path(str(files("fastapi_offline") / "static"))
CONSOLE_STATIC_URL = "/console/static"
SWAGGER_STATIC_URL = "/docs/static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGES = (
    ("overview", "/console", "Overview"),
    ("models", "/console/models", "Models"),
    ("customers", "/console/customers", "Customer"),
    ("quality", "/console/quality", "Quality"),
    ("products", "/console/products", "Products"),
)
MAX_LOGIN_FIELDS = 4

templates = Jinja2Templates(directory=CONSOLE_DIR / "templates")
router = APIRouter(include_in_schema=False)
Parts = Annotated[Components, Depends(components)]


def _html(request: Request, template: str, context: dict, *, status: int = 200):
    response = templates.TemplateResponse(
        request,
        template,
        {"static": CONSOLE_STATIC_URL, "version": __version__, **context},
        status_code=status,
    )
    _protect(response, CONTENT_SECURITY_POLICY)
    return response


def _protect(response: Response, policy: str) -> None:
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


def _to_login(notice: str | None = None) -> RedirectResponse:
    url = "/console/login" + (f"?notice={notice}" if notice else "")
    response = RedirectResponse(url, status_code=303)
    _protect(response, CONTENT_SECURITY_POLICY)
    return response


def _session(request: Request, parts: Components) -> ConsoleSession | None:
    return parts.sessions.verify(request.cookies.get(COOKIE_NAME))


def _same_origin(request: Request) -> bool:
    """A form post from one of our own pages (login CSRF: another site must not log a browser in)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in {"same-origin", "none"}
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    fields = parse_qs(body, max_num_fields=MAX_LOGIN_FIELDS, keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


# --- login and logout ---------------------------------------------------------------------------

NOTICES = {
    "logged_out": "You are logged out.",
    "expired": "Your session has expired; log in again.",
}


@router.get("/console/login")
async def login_page(request: Request, parts: Parts, notice: str | None = None) -> Response:
    if _session(request, parts) is not None:
        return RedirectResponse("/console", status_code=303)
    return _html(request, "login.html", {"notice": NOTICES.get(notice or ""), "error": None})


@router.post("/console/login")
async def login(request: Request, parts: Parts) -> Response:
    if not _same_origin(request):
        return _html(request, "login.html", _login_error("Log in from this site."), status=403)
    try:
        key = (await _form(request)).get("api_key", "")
    except ValueError:  # more fields than a login form has
        key = ""
    if not key or not hmac.compare_digest(key.encode(), parts.api_key.encode()):
        return _html(request, "login.html", _login_error("That is not the admin key."), status=401)
    token, _ = parts.sessions.issue()
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=int(parts.sessions.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=parts.sessions.secure_cookie or request.url.scheme == "https",
    )
    _protect(response, CONTENT_SECURITY_POLICY)
    return response


def _login_error(message: str) -> dict[str, str | None]:
    return {"notice": None, "error": message}


@router.post("/console/logout")
async def logout(request: Request, parts: Parts) -> Response:
    session = _session(request, parts)
    if session is not None:
        try:
            presented = (await _form(request)).get("csrf_token")
        except ValueError:
            presented = None
        if not parts.sessions.csrf_matches(session, presented):
            return Response("the logout form's CSRF token does not match", status_code=403)
    response = _to_login("logged_out")
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


# --- the pages ----------------------------------------------------------------------------------


def _page(name: str):
    async def page(request: Request, parts: Parts) -> Response:
        session = _session(request, parts)
        if session is None:
            notice = "expired" if COOKIE_NAME in request.cookies else None
            return _to_login(notice)
        return _html(
            request,
            f"{name}.html",
            {"page": name, "pages": PAGES, "session": session},
        )

    page.__name__ = f"console_{name}"
    return page


for _name, _path, _title in PAGES:
    router.add_api_route(_path, _page(_name), methods=["GET"], response_class=HTMLResponse)


# --- API docs -----------------------------------------------------------------------------------


@router.get("/docs")
async def api_docs(request: Request) -> Response:
    return _html(
        request,
        "docs.html",
        {"swagger": SWAGGER_STATIC_URL, "openapi_url": request.app.openapi_url},
    )
