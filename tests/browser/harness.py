"""Opening a component's harness page (tests/browser/harness/NAME.html) on the static server."""

from __future__ import annotations

from playwright.async_api import Page

from tests.browser.static_server import StaticServer


async def open_harness(page: Page, server: StaticServer, name: str) -> None:
    """Load the page and wait until its module (and so the component's imports) has run."""
    await page.goto(f"{server.url}/harness/{name}.html")
    await page.wait_for_function("window.harnessReady === true")


async def palette(page: Page, name: str) -> dict[str, str]:
    """A colour table of states.js (TASK_COLOURS, ATTEMPT_COLOURS), read in the page."""
    colours: dict[str, str] = await page.evaluate(
        "async name => ({...(await import('/static/js/states.js'))[name]})", name)
    return colours


def rgb(hex_colour: str) -> str:
    """'#eb5757' as getComputedStyle writes it: 'rgb(235, 87, 87)'."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"

