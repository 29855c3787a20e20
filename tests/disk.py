"""A real filesystem that runs out of space: a small tmpfs, filled and freed on demand."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_CHUNKS = (1 << 20, 1 << 16, 1 << 12)


@dataclass(frozen=True)
class SmallDisk:
    root: Path

    @property
    def filler(self) -> Path:
        return self.root / "filler"

    def fill(self) -> None:
        """Writes until the filesystem refuses another byte."""
        with self.filler.open("ab", buffering=0) as out:
            for size in _CHUNKS:
                chunk = b"\0" * size
                while True:
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[SmallDisk]:
    """Mounting needs root (CAP_SYS_ADMIN), as CI and the dev machine have."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
