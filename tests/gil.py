"""Task code that holds the GIL, as much C code does (a numpy or scikit-learn kernel): the
worker's other threads, its pipe reader included, do not run meanwhile."""

from __future__ import annotations

import sys
import time

_NEVER_S = 1000.0


def hold_the_gil(seconds: float) -> None:
    """Spins without releasing the GIL: no I/O, no sleep, and no thread switch asked for."""
    sys.setswitchinterval(_NEVER_S)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
