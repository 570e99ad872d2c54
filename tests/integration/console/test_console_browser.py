"""The operator console in a real browser: Debian's Chromium, driven by Playwright, against a real
`finverse-reco serve` process over a trained demo world.

Every request a page makes is recorded; none may leave the service's origin, every API call must be
an operation of the published OpenAPI schema, and no page may log a script error or a
Content-Security-Policy violation. The screenshots of each page (desktop and phone width) are taken
here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from ..lifecycle.harness import ServeProcess
from .conftest import ADMIN, API_KEY

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000
REFRESH_WAIT_MS = 120_000


@dataclass
class Recorder:
    """What the pages of one browser context asked for, and what went wrong in them."""

    origin: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.requests.append((request.method, request.url)))
        context.on("page", self._watch_page)

    def _watch_page(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        text = message.text
        if message.type == "error" and "status of 40" not in text:
            self.problems.append(f"console error: {text}")
        elif "Content Security Policy" in text:
            self.problems.append(f"CSP: {text}")

    def foreign(self) -> list[str]:
        return [url for _, url in self.requests if not url.startswith(self.origin + "/")]

    def api_calls(self) -> set[tuple[str, str]]:
        prefix = self.origin
        return {
            (method, url[len(prefix) :].split("?")[0])
            for method, url in self.requests
            if url.startswith(prefix + "/api/")
        }


def documented(server: ServeProcess) -> list[tuple[str, re.Pattern]]:
    """(method, path pattern) of every operation in the served OpenAPI schema."""
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    return [
        (method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
        for path, operations in schema["paths"].items()
        for method in operations
    ]


def new_context(browser: Browser, server: ServeProcess, viewport=DESKTOP) -> tuple:
    context = browser.new_context(viewport=viewport, base_url=server.url)
    recorder = Recorder(server.url)
    recorder.watch(context)
    return context, recorder


def log_in(page: Page, key: str = API_KEY) -> None:
    """By keyboard: the key field has the focus, Enter submits."""
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def go_to(page: Page, title: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=title, exact=True).click()


def shoot(page: Page, directory: Path, name: str) -> None:
    """The page at desktop width, then at phone width (the viewport, so files stay small)."""
    page.wait_for_load_state("networkidle")
    page.screenshot(path=directory / f"{name}-desktop.png")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # charts resize on the next frame
    page.screenshot(path=directory / f"{name}-phone.png")
    page.set_viewport_size(DESKTOP)


def assert_clean(recorder: Recorder, server: ServeProcess) -> None:
    assert recorder.requests, "the pages made no request at all"
    assert recorder.foreign() == [], "requests left the service's origin"
    assert recorder.problems == [], "\n".join(recorder.problems)
    operations = documented(server)
    private = [
        call
        for call in recorder.api_calls()
        if not any(method == call[0] and pattern.match(call[1]) for method, pattern in operations)
    ]
    assert private == [], f"API calls outside the published schema: {private}"


def serving_version(server: ServeProcess) -> str:
    return httpx.get(f"{server.url}/ready", timeout=5).json()["model_version"]


def test_a_wrong_key_is_refused(browser, server, screenshot_dir):
    context, recorder = new_context(browser, server)
    page = context.new_page()
    page.goto("/console/login")
    shoot(page, screenshot_dir, "login")
    log_in(page, "not-the-key")
    expect(page.get_by_role("alert")).to_contain_text("not the admin key")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    assert context.cookies() == []
    page.goto("/console/models")
    expect(page).to_have_url(re.compile(r"/console/login"))
    # The browser's own problem report for the 401 page is expected; nothing else is.
    recorder.problems = [p for p in recorder.problems if "401" not in p]
    assert_clean(recorder, server)
    context.close()


def test_the_console_end_to_end(browser, server, screenshot_dir):
    context, recorder = new_context(browser, server)
    page = context.new_page()
    log_in(page)
    expect(page).to_have_url(re.compile(r"/console$"))
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Overview: the active version, as /ready names it, the readiness checks and the traffic.
    with httpx.Client(base_url=server.url, timeout=10) as traffic:
        for n in range(1, 31):
            assert traffic.get(f"/api/v1/recommendations/products/user_{n:05d}").status_code == 200
    first = serving_version(server)
    expect(page.locator("#model-version")).to_have_text(first, timeout=WAIT_MS)
    expect(page.locator("#health")).to_have_text("Ready")
    expect(page.locator("#checks")).to_contain_text("store — ok")
    expect(page.locator("#endpoints")).to_contain_text("/api/v1/admin/overview", timeout=WAIT_MS)
    expect(page.locator("#endpoints")).to_contain_text("/api/v1/recommendations/products/{user_id}")
    expect(page.locator("#recs-rate")).not_to_have_text("0.00/s")
    shoot(page, screenshot_dir, "overview")

    # Models: start a refresh and watch the new version arrive without reloading the page.
    go_to(page, "Models")
    expect(page.locator("#active-version")).to_have_text(first, timeout=WAIT_MS)
    versions = page.locator("tr[data-version-row]")
    expect(versions).to_have_count(1)
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("button", name="Start a refresh").click()
    expect(page.locator("#job-state")).to_have_text("running", timeout=WAIT_MS)
    expect(versions).to_have_count(2, timeout=REFRESH_WAIT_MS)
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=REFRESH_WAIT_MS)
    second = serving_version(server)
    assert second != first
    expect(page.locator("#active-version")).to_have_text(second, timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    shoot(page, screenshot_dir, "models")

    # Roll back to the first version, through the confirmation dialog.
    page.get_by_role("button", name=f"Activate {first}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(first)
    page.keyboard.press("Escape")  # a dialog closed without confirming activates nothing
    expect(dialog).to_be_hidden()
    assert serving_version(server) == second
    page.get_by_role("button", name=f"Activate {first}").click()
    dialog.get_by_role("button", name="Activate").click()
    expect(page.locator("#active-version")).to_have_text(first, timeout=WAIT_MS)
    assert serving_version(server) == first  # this replica swapped at once

    # Customer: a demo customer's list with its reasons, and their events.
    go_to(page, "Customer")
    page.get_by_label("Customer id").focus()
    page.keyboard.type("user_00001")
    page.keyboard.press("Enter")
    reasons = page.locator("#recommendations td[data-reason]")
    expect(reasons.first).not_to_be_empty(timeout=WAIT_MS)
    assert reasons.count() == 10
    expected = httpx.get(
        f"{server.url}/api/v1/recommendations/products/user_00001?limit=10", timeout=10
    ).json()
    assert reasons.all_inner_texts() == [
        item["reason"]["text"] for item in expected["recommendations"]
    ]
    expect(page.locator("#events tr").first).to_contain_text("prod_")
    # The demo's profiles carry no consent answer: never asked, personalised.
    expect(page.locator("#consent")).to_contain_text("never asked")
    expect(page.locator("#profile tr")).to_have_count(9)
    expect(page.locator("#profile")).to_contain_text("KYC")
    expect(page.locator("[data-unavailable]")).to_have_count(2)
    shoot(page, screenshot_dir, "customer")

    # Quality: the latest evaluation report and its chart; online metrics not there yet.
    go_to(page, "Quality")
    expect(page.locator("#evaluation-meta")).to_contain_text("demo-holdout.json", timeout=WAIT_MS)
    expect(page.locator("#evaluation-rows tr")).to_have_count(2)
    expect(page.locator("[data-unavailable]")).to_have_count(1)
    shoot(page, screenshot_dir, "quality")

    # Products: search the catalog, then a product's similar products.
    go_to(page, "Products")
    page.get_by_label("Search the catalog").fill("prod_0001")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#products tr")).to_have_count(1, timeout=WAIT_MS)
    page.get_by_role("button", name="Similar to prod_0001").click()
    expect(page.locator("#similar-rows tr")).to_have_count(10, timeout=WAIT_MS)
    shoot(page, screenshot_dir, "products")

    # Log out: the cookie is gone, the pages send the browser back to the login form.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login\?notice=logged_out"))
    expect(page.get_by_role("status")).to_contain_text("logged out")
    assert context.cookies() == []
    page.goto("/console/models")
    expect(page).to_have_url(re.compile(r"/console/login"))
    assert page.request.get("/api/v1/admin/overview").status == 401

    assert_clean(recorder, server)
    # Every page of the console was visited through the documented admin API.
    calls = recorder.api_calls()
    for call in [
        ("GET", "/api/v1/admin/overview"),
        ("GET", "/api/v1/admin/models"),
        ("POST", "/api/v1/recommendations/refresh-model"),
        ("POST", f"/api/v1/admin/models/{first}/activate"),
        ("GET", "/api/v1/admin/customers/user_00001/events"),
        ("GET", "/api/v1/customers/user_00001/profile"),
        ("GET", "/api/v1/admin/evaluations/latest"),
        ("GET", "/api/v1/admin/products"),
    ]:
        assert call in calls
    context.close()


def test_the_api_docs_load_from_the_service_alone(browser, server, screenshot_dir):
    context, recorder = new_context(browser, server)
    page = context.new_page()
    page.goto("/docs")
    expect(page.get_by_text("FinVerse Recommendation Service").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    page.screenshot(path=screenshot_dir / "docs-desktop.png")
    # Try an operation: the request goes to this service, the page stays within its policy.
    page.locator("#operations-health-health_health_get").get_by_role("button").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_contain_text(
        "200"
    )
    assert_clean(recorder, server)
    assert any(url.endswith("/openapi.json") for _, url in recorder.requests)
    assert any(url == f"{server.url}/health" for _, url in recorder.requests)
    # The recorder does see a policy violation: an injected inline script is refused and reported.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.append(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.x") is None
    assert any("Content Security Policy" in problem for problem in recorder.problems)
    context.close()


def test_an_admin_call_without_key_or_session_gets_401(server):
    for path in ("/api/v1/admin/overview", "/api/v1/admin/models"):
        response = httpx.get(f"{server.url}{path}", timeout=5)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert httpx.get(f"{server.url}{path}", headers=ADMIN, timeout=5).status_code == 200
