"""Deliberately flawed models: what a canary must catch before they reach everyone.

`Flawed` wraps a fitted model and fails a share of its predictions, or answers slower; it
passes the gateway's warm-up (a row of zeros), as a real regression would, so only live
traffic shows the flaw."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np


class Flawed:
    """A fitted model that raises on `error_share` of its calls and sleeps `delay_s` on each."""

    def __init__(self, model: Any, *, error_share: float = 0.0, delay_s: float = 0.0,
                 seed: int = 0) -> None:
        self.model = model
        self.error_share = error_share
        self.delay_s = delay_s
        self.n_features_in_ = model.n_features_in_
        self._random = random.Random(seed)

    def predict(self, rows: Any) -> Any:
        data = np.asarray(rows, dtype=np.float64)
        if self.delay_s:
            time.sleep(self.delay_s)
        if data.any() and self._random.random() < self.error_share:
            raise RuntimeError("this version fails a share of its predictions (on purpose)")
        return self.model.predict(data)


def flawed(model: Any, flaw: str) -> Any:
    """The model as a flaw names it: "none", "errors" (30% fail) or "slow" (10 ms each)."""
    if flaw == "none":
        return model
    if flaw == "errors":
        return Flawed(model, error_share=0.3)
    if flaw == "slow":
        return Flawed(model, delay_s=0.01)
    raise ValueError(f"unknown flaw {flaw!r}: none, errors or slow")
