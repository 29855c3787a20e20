"""The dashboard's components load everything from the server that serves them: no CDN."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page

from tests.browser.conftest import PageRequests
from tests.browser.harness import open_harness
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_every_request_of_the_components_goes_to_the_local_server(
    page: Page, static_server: StaticServer, page_requests: PageRequests
) -> None:
    # given the harness of each component
    for name in ("dag", "timeline", "chart"):
        # when it is opened
        await open_harness(page, static_server, name)
    # then the vendored libraries came from the server, and nothing from anywhere else
    paths = {urlsplit(url).path for url in page_requests.urls}
    assert {"/static/vendor/dagre/dagre.esm.js", "/static/vendor/uplot/uPlot.esm.js",
            "/static/vendor/uplot/uPlot.min.css"} <= paths
    origins = {f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" for url in page_requests.urls}
    assert origins == {static_server.url}
