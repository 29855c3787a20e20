"""dom.js, the one way the dashboard makes nodes: strings from the API become text, never HTML."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.browser.harness import open_harness
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_strings_become_text_and_attributes_never_handlers(
    page: Page, static_server: StaticServer
) -> None:
    # given a page with dom.js
    await open_harness(page, static_server, "dag")
    # when an element is built from markup-looking strings, and one with an event handler
    built = await page.evaluate("""async () => {
        const { el } = await import('/static/js/dom.js');
        const cell = el('td', { title: '"><b>t</b>' }, '<b>error</b>', 7, null);
        let refused = null;
        try { el('a', { onclick: 'window.pwned = 1' }); } catch (e) { refused = e.message; }
        return { text: cell.textContent, title: cell.title, elements: cell.children.length,
                 refused };
    }""")
    # then the strings are the text and attribute values, and the handler was refused
    assert built == {"text": "<b>error</b>7", "title": '"><b>t</b>', "elements": 0,
                     "refused": "dom: no event handlers as attributes (onclick)"}
