"""Record the golden decision histories: `python -m tests.golden.histories` (repo root).

The golden run logs (tests/golden/record.py) hold outcomes; these hold what each decision
saw. Every scenario is driven through the real decide by a recording harness at a fixed
clock with fixed ids, and every step is written to tests/golden/histories/<scenario>.jsonl:
each input or tick with its `now` and the decisions it produced, in order, and each change of
the fleet, the champions or the settings the shell feeds decide (orchestrator.core.history
describes the lines). CI (tests/core/test_golden_histories.py) re-decides every step with
today's code and fails at the first decision that differs, naming the line and the input.

A deliberate change to a decision is reviewed as a diff: run `python -m tests.golden.histories`
and read `git diff tests/golden/histories`; every changed line is a decision that changed.
`python -m tests.golden.histories --check` replays without writing (what CI does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from events.envelope import Envelope
from events.payloads import Payload
from orchestrator.core.copying import replace
from orchestrator.core.decide import Input, Tick
from orchestrator.core.errors import InvalidInput
from orchestrator.core.history import (
    ChampionsChanged,
    Decided,
    FleetChanged,
    Header,
    History,
    SettingsChanged,
    Step,
    parse,
    render,
)
from orchestrator.core.replayer import Divergence, replay_history
from orchestrator.core.settings import Settings
from tests.core.support import CheckedHarness
from tests.golden import scenarios_flow, scenarios_placement

DIRECTORY = Path(__file__).parent / "histories"
REVIEW = ("if this change to decisions is deliberate, regenerate with "
          "`python -m tests.golden.histories` and review the diff "
          "(`git diff tests/golden/histories`); otherwise the change broke a decision")

Scenario = Callable[[CheckedHarness], None]
SCENARIOS: dict[str, Scenario] = {**scenarios_flow.SCENARIOS, **scenarios_placement.SCENARIOS}


@dataclass
class RecordingHarness(CheckedHarness):
    """The checked harness (pure, deterministic decide), keeping every decide call as a step,
    preceded by whatever the scenario changed in the fleet, champions or settings."""

    steps: list[Step] = field(default_factory=list)
    initial: Settings | None = None
    _fleet: FleetChanged = field(default_factory=lambda: FleetChanged(()))
    _champions: ChampionsChanged = field(default_factory=lambda: ChampionsChanged(()))
    _settings: Settings | None = None

    def decide(self, input: Input) -> list[Envelope[Payload]]:
        self._record_context()
        recorded = None if isinstance(input, Tick) else input
        try:
            out = super().decide(input)
        except InvalidInput as exc:
            self.steps.append(Decided(self.now, recorded, invalid=str(exc)))
            raise
        self.steps.append(Decided(self.now, recorded, tuple(out)))
        return out

    def history(self, scenario: str, about: str) -> History:
        self._record_context()  # settings chosen by a scenario that decided nothing
        assert self.initial is not None
        return History(Header(self.initial, scenario, about), tuple(self.steps))

    def _record_context(self) -> None:
        assert not self.lent.demand and self.state.group == -1, (
            "a history does not record other partition groups' demand: keep scenarios to one")
        fleet = FleetChanged(tuple(replace(a) for a in self.lent.agents.values()))
        champions = ChampionsChanged(tuple(self.lent.champions.values()))
        if fleet != self._fleet:
            self.steps.append(fleet)
        if champions != self._champions:
            self.steps.append(champions)
        if self.initial is None:
            self.initial = self.settings
        elif self.settings != self._settings:
            self.steps.append(SettingsChanged(self.settings))
        self._fleet, self._champions, self._settings = fleet, champions, self.settings


def recorded(name: str) -> History:
    """Drive one scenario through the recording harness; the history it leaves."""
    scenario = SCENARIOS[name]
    h = RecordingHarness()
    scenario(h)
    return h.history(name, " ".join((scenario.__doc__ or "").split()))


def path_of(name: str, directory: Path = DIRECTORY) -> Path:
    return directory / f"{name}.jsonl"


def replay_file(path: Path, *, retire: bool = False) -> Divergence | None:
    return replay_history(parse(path.read_bytes().splitlines()), retire=retire)


def failure_message(path: Path, divergence: Divergence) -> str:
    """What CI prints: where the decisions diverge and how to review a deliberate change."""
    return f"{path.name}: {divergence}\n{REVIEW}"


def record(directory: Path = DIRECTORY) -> list[Path]:
    """(Re)write every scenario's history; each must replay cleanly before it is written
    (one that does not depends on something the history does not record)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in SCENARIOS:
        history = recorded(name)
        divergence = replay_history(history)
        assert divergence is None, f"{name} does not replay from its own history: {divergence}"
        path_of(name, directory).write_bytes(render(history))
        written.append(path_of(name, directory))
    return written


def check(directory: Path = DIRECTORY) -> list[str]:
    """Replay every checked-in history; the failure messages (empty when all agree)."""
    failures = []
    for path in sorted(directory.glob("*.jsonl")):
        divergence = replay_file(path)
        if divergence is not None:
            failures.append(failure_message(path, divergence))
    return failures


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        failures = check()
        print("\n\n".join(failures) or f"{len(SCENARIOS)} histories replay unchanged")
        return 1 if failures else 0
    for path in record():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
