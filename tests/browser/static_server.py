"""A real HTTP server for static files in a thread: the dashboard's assets and test harnesses.

Each mount maps a URL prefix to a folder (`/static/` -> orchestrator/api/static, as the API
serves it; `/harness/` -> tests/browser/harness). Bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _MountedFiles(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def __init__(self, *args: Any, mounts: dict[str, Path], **kwargs: Any) -> None:
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        for prefix, root in self.mounts.items():
            if path.startswith(prefix):
                self.directory = str(root)
                return super().translate_path("/" + path[len(prefix):])
        return str(Path(self.directory) / "no-such-mount")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test that needs the requests records them in the browser."""


class StaticServer:
    """Serves `mounts` until `close`; `url` is its origin, e.g. http://127.0.0.1:40123."""

    def __init__(self, mounts: dict[str, Path]) -> None:
        handler = partial(_MountedFiles, mounts=mounts, directory=str(next(iter(mounts.values()))))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
