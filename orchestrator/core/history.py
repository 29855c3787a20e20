"""Decision histories: every input, tick and context change decide saw, and what it decided.

One JSON object per line, so a deliberate change to a decision shows in review as the diff of
the lines it changed. Line 1 is the header (format and settings); every later line is a step:
an input or a tick with the `now` it was decided at and its decisions in order, or a change
of what the shell feeds the state (the fleet, the champions, the settings). Envelopes are in
their wire form (events.codec). Everything decide reads is in the file, so re-deciding a
history (orchestrator.core.replayer) needs nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from events import codec
from events.common import Capabilities
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from orchestrator.core.errors import CoreError
from orchestrator.core.settings import Settings
from orchestrator.core.state import AgentStatus, Champion

FORMAT = 1


class HistoryCorrupt(CoreError):
    """A history line that cannot be read: say which, rather than replay something else."""


@dataclass(frozen=True, slots=True)
class Header:
    """Line 1: what the history records, and the settings decide ran with from the start."""

    settings: Settings
    scenario: str = ""
    about: str = ""


@dataclass(frozen=True, slots=True)
class Decided:
    """One decide call: an input (a tick when `input` is None) at `now`, and its outcome: the
    decisions in order, or why the input could not apply (`invalid`: the shell dead-letters it)."""

    now: float
    input: Envelope[Payload] | None
    decisions: tuple[Envelope[Payload], ...] = ()
    invalid: str | None = None


@dataclass(frozen=True, slots=True)
class FleetChanged:
    """The whole fleet as the shell now feeds it, in its order (placement breaks ties by it)."""

    agents: tuple[AgentStatus, ...]


@dataclass(frozen=True, slots=True)
class ChampionsChanged:
    """Every model's current champion, as the registry's log now says (gates read them)."""

    champions: tuple[Champion, ...]


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    settings: Settings


Step = Decided | FleetChanged | ChampionsChanged | SettingsChanged


@dataclass(frozen=True, slots=True)
class History:
    header: Header
    steps: tuple[Step, ...]


FIRST_STEP_LINE = 2
"""Steps are numbered by their line in the file; line 1 is the header."""


def render(history: History) -> bytes:
    """The file: one compact JSON object per line, the same bytes for the same history."""
    lines = (history.header, *history.steps)
    return b"".join(json.dumps(_WRITERS[type(line)](line)).encode() + b"\n" for line in lines)


def parse(lines: Iterable[bytes | str]) -> History:
    """Read a rendered history; HistoryCorrupt names the first line that cannot be read."""
    parsed: list[Header | Step] = []
    for number, raw in enumerate(lines, start=1):
        try:
            parsed.append(_read(json.loads(raw)))
        except (ValueError, KeyError, TypeError, EventParseError) as exc:
            raise HistoryCorrupt(f"line {number}: {type(exc).__name__}: {exc}") from None
    if not parsed or not isinstance(parsed[0], Header):
        raise HistoryCorrupt("line 1: a history starts with its header")
    steps = tuple(step for step in parsed[1:] if not isinstance(step, Header))
    if len(steps) != len(parsed) - 1:
        raise HistoryCorrupt("a history has exactly one header, on line 1")
    return History(parsed[0], steps)


def _read(obj: dict[str, Any]) -> Header | Step:
    kind = obj["kind"]
    reader = _READERS.get(kind)
    if reader is None:
        raise ValueError(f"unknown step kind {kind!r} (known: {', '.join(_READERS)})")
    return reader(obj)


# --- writing ------------------------------------------------------------------------------


def _header_data(h: Header) -> dict[str, Any]:
    return {"kind": "header", "format": FORMAT, "scenario": h.scenario, "about": h.about,
            "settings": _fields(h.settings)}


def _decided_data(d: Decided) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": "tick" if d.input is None else "input", "now": d.now}
    if d.input is not None:
        data["input"] = _envelope_data(d.input)
    data["decisions"] = [_envelope_data(env) for env in d.decisions]
    if d.invalid is not None:
        data["invalid"] = d.invalid
    return data


def _fleet_data(f: FleetChanged) -> dict[str, Any]:
    agents = [{**_fields(a), "capabilities": a.capabilities.model_dump(mode="json")}
              for a in f.agents]
    return {"kind": "fleet", "agents": agents}


def _champions_data(c: ChampionsChanged) -> dict[str, Any]:
    return {"kind": "champions", "champions": [_fields(champion) for champion in c.champions]}


def _settings_step_data(s: SettingsChanged) -> dict[str, Any]:
    return {"kind": "settings", "settings": _fields(s.settings)}


def _envelope_data(env: Envelope[Payload]) -> dict[str, Any]:
    """An envelope as the wire holds it (events.codec), as JSON data."""
    data: dict[str, Any] = json.loads(codec.encode(env))
    return data


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


_WRITERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Header: _header_data, Decided: _decided_data, FleetChanged: _fleet_data,
    ChampionsChanged: _champions_data, SettingsChanged: _settings_step_data,
}


# --- reading ------------------------------------------------------------------------------


def _header(obj: dict[str, Any]) -> Header:
    if obj.get("format") != FORMAT:
        raise ValueError(f"history format {obj.get('format')!r}; this reader knows {FORMAT}")
    return Header(_settings(obj["settings"]), obj.get("scenario", ""), obj.get("about", ""))


def _decided(obj: dict[str, Any]) -> Decided:
    raw_input = obj.get("input") if obj["kind"] == "input" else None
    if obj["kind"] == "input" and raw_input is None:
        raise ValueError("an input step needs its input")
    return Decided(
        now=float(obj["now"]), input=None if raw_input is None else _envelope(raw_input),
        decisions=tuple(_envelope(env) for env in obj["decisions"]), invalid=obj.get("invalid"),
    )


def _fleet(obj: dict[str, Any]) -> FleetChanged:
    return FleetChanged(tuple(
        AgentStatus(**{**a, "capabilities": Capabilities.model_validate(a["capabilities"])})
        for a in obj["agents"]))


def _champions(obj: dict[str, Any]) -> ChampionsChanged:
    return ChampionsChanged(tuple(Champion(**c) for c in obj["champions"]))


def _settings_step(obj: dict[str, Any]) -> SettingsChanged:
    return SettingsChanged(_settings(obj["settings"]))


def _envelope(obj: dict[str, Any]) -> Envelope[Payload]:
    """Through the bytes, exactly as a consumer reads the wire (upcasting old versions)."""
    return codec.decode(json.dumps(obj).encode())


def _settings(obj: dict[str, Any]) -> Settings:
    return Settings(**{name: _tuples(value) for name, value in obj.items()})


def _tuples(value: Any) -> Any:
    """JSON has only lists; settings hold tuples (they are frozen and hashed)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_READERS: dict[str, Callable[[dict[str, Any]], Header | Step]] = {
    "header": _header, "input": _decided, "tick": _decided, "fleet": _fleet,
    "champions": _champions, "settings": _settings_step,
}
