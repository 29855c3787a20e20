"""Where the embedded deployment keeps its files: ./.baton, $BATON_HOME, or --home."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bus.factory import EMBEDDED_FILE


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, given: str | None = None) -> Home:
        root = Path(given or os.environ.get("BATON_HOME") or ".baton").expanduser().resolve()
        return cls(root)

    def create(self) -> Home:
        for path in (self.root, self.artifacts, self.datasets, self.agents):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def bus(self) -> Path:
        return self.root / EMBEDDED_FILE

    @property
    def projections(self) -> Path:
        return self.root / "projections.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def agents(self) -> Path:
        return self.root / "agents"
