"""Announcing a dataset file hashes it streamed, never holding the file in memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

from orchestrator.datasets import file_digest

SIZE = 8 * 1024 * 1024


def test_a_file_is_hashed_streamed_with_its_size(tmp_path: Path) -> None:
    # given an 8 MB data file
    path = tmp_path / "train.npz"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    # when it is hashed, with Python's allocations traced
    tracemalloc.start()
    try:
        digest, size = file_digest(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then the digest and size are the file's, and far less than the file was ever held
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), SIZE)
    assert peak < SIZE // 8
