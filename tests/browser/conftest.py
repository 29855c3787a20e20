"""Fixtures for tests in a real headless Chromium (Debian's, driven by Playwright's async API).

- `browser`: one Chromium for the session, launched from `chromium.chromium_path()`; a missing
  browser fails with the fix (`./dev test` installs it), never a skip.
- `page`: a fresh context and page per test. Every request the page makes is recorded; one to
  a host other than loopback is blocked and fails the test (the dashboard loads nothing from a
  CDN), and so does an uncaught error in the page.
- `static_server`: a real HTTP server for orchestrator/api/static (at /static/) and the
  harness pages of tests/browser/harness (at /harness/).
- `screenshot(name)`: saves the page as a test artifact (artifacts.py says where).

A test that takes `browser` or `page` is marked `browser` here; its module runs on the
session's event loop: `pytestmark = pytest.mark.asyncio(loop_scope="session")`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Request, Route, async_playwright

from tests.browser.artifacts import save_screenshot
from tests.browser.chromium import chromium_path, missing_chromium
from tests.browser.static_server import StaticServer

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Called with the whole session's items: only this folder's browser tests are marked."""
    here = Path(__file__).parent
    for item in items:
        in_here = item.path.is_relative_to(here)
        if in_here and {"browser", "page"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if reason := missing_chromium(path):
        pytest.fail(reason, pytrace=False)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(path), headless=True)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def static_server() -> Iterator[StaticServer]:
    server = StaticServer({
        "/static/": ROOT / "orchestrator" / "api" / "static",
        "/harness/": ROOT / "tests" / "browser" / "harness",
    })
    yield server
    server.close()


class PageRequests:
    """Every URL the page asked for, and those that left loopback (blocked)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []

    def record(self, request: Request) -> None:
        self.urls.append(request.url)
        if not is_local(request.url):
            self.outside.append(request.url)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"data", "blob", "about"} or parts.hostname in LOOPBACK


async def _block_outside(route: Route) -> None:
    if is_local(route.request.url):
        await route.continue_()
    else:
        await route.abort("blockedbyclient")


@pytest_asyncio.fixture(loop_scope="session")
async def page_requests() -> PageRequests:
    return PageRequests()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, page_requests: PageRequests) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    context.set_default_timeout(5_000)
    await context.route("**/*", _block_outside)
    opened = await context.new_page()
    opened.on("request", page_requests.record)
    opened.on("pageerror", lambda error: page_requests.errors.append(str(error)))
    yield opened
    await context.close()
    assert not page_requests.outside, f"requests left localhost: {page_requests.outside}"
    assert not page_requests.errors, f"uncaught errors in the page: {page_requests.errors}"


@pytest_asyncio.fixture(loop_scope="session")
async def screenshot(
    page: Page, request: pytest.FixtureRequest
) -> Callable[[str], Awaitable[Path]]:
    def save(name: str) -> Awaitable[Path]:
        return save_screenshot(page, f"{request.node.name}-{name}")

    return save
