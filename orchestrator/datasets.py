"""Local dataset files: the digest and size an announcement of one carries."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size, streamed: a 20 GB training set must not need 20 GB of memory."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return digest, handle.tell()
