"""Re-decide a recorded history with today's decide and name the first decision that differs.

Temporal's replayer is the model: a change to `decide` that reorders or alters decisions fails
loudly at the first step where it shows, naming the input and the decision, even when the run
would end in the same state (which is all the outcome-only golden logs can see).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from events import codec
from events.envelope import Envelope
from events.payloads import Payload
from orchestrator.core.copying import replace
from orchestrator.core.decide import Tick, decide
from orchestrator.core.errors import InvalidInput
from orchestrator.core.evolve import evolve_lending
from orchestrator.core.history import (
    FIRST_STEP_LINE,
    ChampionsChanged,
    Decided,
    FleetChanged,
    History,
    SettingsChanged,
    Step,
)
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState, Lent

MOST_FIELDS = 6
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where today's decide first disagrees with the history, and how."""

    line: int
    """The step's line in the history file (line 1 is the header)."""
    cause: str
    """What was being decided: the input's type and id, or the tick, with its `now`."""
    index: int
    """Which decision of that step (0-based) is the first to differ."""
    expected: str
    got: str
    fields: tuple[str, ...] = ()
    """Field-level differences of that decision: `data.retry_at: expected 1004.0, got 1008.0`."""
    expected_types: tuple[str, ...] = ()
    got_types: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"decisions diverge at line {self.line} ({self.cause}), "
                 f"decision {self.index + 1}:",
                 f"  expected {self.expected}", f"  got      {self.got}",
                 *(f"    {diff}" for diff in self.fields)]
        if self.expected_types != self.got_types:
            lines += [f"  recorded decisions: {', '.join(self.expected_types) or 'none'}",
                      f"  decided now:        {', '.join(self.got_types) or 'none'}"]
        return "\n".join(lines)


def replay_history(history: History, *, retire: bool = False) -> Divergence | None:
    """Re-decide every recorded input from an empty state, folding the recorded decisions;
    None when every decision is the one recorded, field for field and in order. `retire`:
    on the bounded state the coordinator keeps (a run that ends leaves it, core/ended.py),
    which must decide the same."""
    state, settings = CoordinatorState(retire=retire), history.header.settings
    lent = Lent()
    for line, step in enumerate(history.steps, start=FIRST_STEP_LINE):
        if isinstance(step, Decided):
            divergence = _redecide(state, lent, step, settings, line)
            if divergence is not None:
                return divergence
            for env in step.decisions:
                if env.sequence is not None:  # run-log events; commands leave the state as is
                    evolve_lending(state, lent.in_flight, env)
        else:
            settings = _apply_context(lent, step, settings)
    return None


def _apply_context(lent: Lent, step: Step, settings: Settings) -> Settings:
    if isinstance(step, FleetChanged):
        lent.agents = {a.agent_id: replace(a) for a in step.agents}
    elif isinstance(step, ChampionsChanged):
        lent.champions = {c.model: c for c in step.champions}
    elif isinstance(step, SettingsChanged):
        return step.settings
    return settings


def _redecide(state: CoordinatorState, lent: Lent, step: Decided, settings: Settings,
              line: int) -> Divergence | None:
    cause = _describe_cause(step)
    try:
        got = decide(state, lent, Tick() if step.input is None else step.input, step.now, settings)
    except InvalidInput as exc:
        return _invalid_differs(line, cause, step, str(exc))
    except Exception as exc:
        exc.add_note(f"while re-deciding line {line} of the history ({cause})")
        raise
    if step.invalid is not None:
        return _invalid_differs(line, cause, step, None, got)
    return _first_difference(line, cause, step.decisions, got)


def _describe_cause(step: Decided) -> str:
    if step.input is None:
        return f"tick at now={step.now!r}"
    return f"input {step.input.type} {step.input.id} at now={step.now!r}"


def _invalid_differs(line: int, cause: str, step: Decided, invalid: str | None,
                     got: Sequence[Envelope[Payload]] = ()) -> Divergence | None:
    """The input was refused as invalid (dead-lettered by the shell) on one side only, or
    for another reason."""
    if invalid == step.invalid:
        return None
    return Divergence(line, cause, 0, _outcome(step.invalid, step.decisions),
                      _outcome(invalid, got))


def _outcome(invalid: str | None, decisions: Sequence[Envelope[Payload]]) -> str:
    if invalid is not None:
        return f"the input refused as invalid: {invalid}"
    first = f", the first {_summary(_normal(decisions[0]))}" if decisions else ""
    return f"{len(decisions)} decisions{first}"


def _first_difference(line: int, cause: str, recorded: tuple[Envelope[Payload], ...],
                      decided: list[Envelope[Payload]]) -> Divergence | None:
    """Compare decoded-then-re-encoded envelopes, so field order and defaults are normalised."""
    expected, got = [_normal(e) for e in recorded], [_normal(e) for e in decided]
    for index in range(max(len(expected), len(got))):
        want = expected[index] if index < len(expected) else None
        have = got[index] if index < len(got) else None
        if want != have:
            return Divergence(
                line, cause, index, _summary(want), _summary(have),
                _field_diff(want, have) if want and have else (),
                tuple(str(e["type"]) for e in expected), tuple(str(e["type"]) for e in got))
    return None


def _normal(env: Envelope[Payload]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(codec.encode(codec.decode(codec.encode(env))))
    return data


def _summary(env: dict[str, Any] | None) -> str:
    return "no decision" if env is None else f"{env['type']} {env['id']}"


def _field_diff(want: dict[str, Any], have: dict[str, Any]) -> tuple[str, ...]:
    a, b = _flat(want), _flat(have)
    paths = [p for p in dict.fromkeys([*a, *b]) if a.get(p, _ABSENT) != b.get(p, _ABSENT)]
    shown = tuple(f"{p}: expected {_show(a.get(p, _ABSENT))}, got {_show(b.get(p, _ABSENT))}"
                  for p in paths[:MOST_FIELDS])
    more = len(paths) - MOST_FIELDS
    return (*shown, f"... and {more} more fields") if more > 0 else shown


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items()
                for k, v in _flat(item, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value)
                for k, v in _flat(item, f"{path}[{i}]").items()}
    return {path: value}


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
