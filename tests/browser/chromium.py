"""Where the browser tests find Chromium, and the message that says how to get it.

Debian's `chromium` package, driven by Playwright's Python package (never `playwright install`,
whose download is not reachable everywhere CI runs). `./dev test` installs both when missing;
anywhere else a missing browser fails the browser tests with the fix, never skips them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT = "/usr/bin/chromium"


def chromium_path() -> Path:
    """BATON_CHROMIUM if set, else `chromium` on PATH, else Debian's /usr/bin/chromium."""
    configured = os.environ.get("BATON_CHROMIUM")
    return Path(configured or shutil.which("chromium") or DEFAULT)


def missing_chromium(path: Path) -> str | None:
    """Why `path` cannot be launched, with the fix; None when it can."""
    if path.is_file() and os.access(path, os.X_OK):
        return None
    return (
        f"the browser tests need Chromium, and {path} is not an executable: run `./dev test`"
        " (it installs Debian's chromium), or `apt-get install -y chromium`, or set"
        " BATON_CHROMIUM to a Chromium binary; `-m 'not browser'` leaves these tests out"
    )
