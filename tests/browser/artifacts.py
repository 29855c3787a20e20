"""Screenshots as test artifacts: under $BATON_TEST_ARTIFACTS/screenshots, else
.artifacts/screenshots at the repository root (gitignored), one PNG per name, overwritten."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.async_api import Page

ROOT = Path(__file__).resolve().parents[2]


def screenshots_dir() -> Path:
    base = Path(os.environ.get("BATON_TEST_ARTIFACTS") or ROOT / ".artifacts")
    folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def save_screenshot(page: Page, name: str) -> Path:
    """Save what `page` shows now as `name`.png (anything but letters, digits, `.-_` -> `_`)."""
    path = screenshots_dir() / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
