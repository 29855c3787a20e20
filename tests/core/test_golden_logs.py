"""Checked-in run logs must still decode and fold to the same runs (schema and fold stability).

The logs and their expected projections live in tests/golden and were written by
`python -m tests.golden.record`. If one of these tests fails, a change broke logs that
already exist in the wild: fix the change (or add an upcaster), don't re-record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import codec
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.core.state import CoordinatorState
from tests.golden import record

GOLDEN = Path(record.__file__).parent
LOGS = sorted(GOLDEN.glob("*.jsonl"))


def replay(path: Path) -> CoordinatorState:
    state = initial_state()
    for line in path.read_bytes().splitlines():
        evolve(state, codec.decode(line))
    return state


def test_every_recorded_scenario_has_a_checked_in_log_and_expected_projection() -> None:
    assert [p.stem for p in LOGS] == sorted(record.SCENARIOS)
    for log in LOGS:
        assert log.with_suffix(".expected.json").is_file()


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_a_checked_in_log_replays_to_its_expected_projection(log: Path) -> None:
    expected = json.loads(log.with_suffix(".expected.json").read_text())

    state = replay(log)

    assert record.projection(state) == expected


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_a_checked_in_log_has_gapless_sequences_and_unique_ids(log: Path) -> None:
    envs = [codec.decode(line) for line in log.read_bytes().splitlines()]

    assert [e.sequence for e in envs] == list(range(1, len(envs) + 1))
    assert len({e.id for e in envs}) == len(envs)


def test_the_recorded_scenarios_are_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    record.record(first)
    record.record(second)

    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_scenarios_still_end_as_recorded() -> None:
    """The live decide still drives each scenario to the recorded outcome (not byte-equal)."""
    for name, scenario in record.SCENARIOS.items():
        expected = json.loads((GOLDEN / f"{name}.expected.json").read_text())
        assert record.projection(scenario().state) == expected, name
