"""The trusted fold (core/trusted_fold.py) enters runs-k records Baton wrote into a retiring
state exactly as the validating path (decode, evolve) does, and hands that path whatever it
cannot vouch for, so a damaged log still raises LogCorrupt there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from events import codec
from events.errors import EventParseError
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.evolve import evolve
from orchestrator.core.state import CoordinatorState
from orchestrator.core.trusted_fold import TrustedFold
from tests.golden import record

GOLDEN = Path(record.__file__).parent
LOGS = sorted(GOLDEN.glob("*.jsonl"))
HAPPY = GOLDEN / "happy_digits.jsonl"
"""A run from its creation to its success, nothing after."""
CANCELLED = GOLDEN / "cancelled_run.jsonl"
"""A run cancelled, then an input to it recorded as ignored after its end."""


def validating(values: Sequence[bytes]) -> CoordinatorState:
    state = CoordinatorState(retire=True)
    for value in values:
        evolve(state, codec.decode(value))
    return state


def trusted(values: Sequence[bytes], *, batch: int = 7) -> tuple[CoordinatorState, int]:
    """The trusted fold taking `values` a few at a time, as a restore reads them; and how many
    it handed to the validating path."""
    state = CoordinatorState(retire=True)
    fold = TrustedFold(state, lambda value: value)
    careful = 0
    for at in range(0, len(values), batch):
        for value in fold.take(values[at:at + batch]):
            evolve(state, codec.decode(value))
            careful += 1
    for value in fold.finish():
        evolve(state, codec.decode(value))
        careful += 1
    return state, careful


def same(a: CoordinatorState, b: CoordinatorState) -> bool:
    return a.runs == b.runs and a.active == b.active and a.ended == b.ended


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_a_golden_log_folds_the_same_both_ways(log: Path) -> None:
    # given a checked-in log, whole and cut half way (a run still live at the end)
    values = lines(log)
    for cut in (values, values[:len(values) // 2]):
        # when it is folded both ways, then the states are the same
        folded, _ = trusted(cut)
        assert same(folded, validating(cut))


def test_a_run_that_begins_and_ends_among_the_records_is_entered_without_the_careful_path(
        ) -> None:
    # given the log of a run from its creation to its end, and what it is once ended
    values = lines(HAPPY)
    # when it is folded the trusted way, then nothing went to the validating path
    folded, careful = trusted(values)
    assert careful == 0 and not folded.runs and len(folded.ended) == 1


def _edited(values: list[bytes], index: int, **changes: object) -> list[bytes]:
    env = json.loads(values[index])
    env.update(changes)
    return [*values[:index], json.dumps(env, separators=(",", ":")).encode(),
            *values[index + 1:]]


def test_a_sequence_out_of_step_is_refused_as_the_validating_path_refuses_it() -> None:
    # given a run's log with one event's sequence skipped ahead
    values = _edited(lines(HAPPY), 3, sequence=9)
    # when it is folded the trusted way, then the validating path raises for it
    with pytest.raises(LogCorrupt, match="has sequence 9, expected 4"):
        trusted(values)


def test_a_run_created_twice_is_refused() -> None:
    values = lines(HAPPY)
    with pytest.raises(LogCorrupt, match="created twice"):
        trusted([*values, values[0]])


def test_an_envelope_with_its_fields_in_another_order_is_still_trusted() -> None:
    # given a run's log with one envelope's fields in another order (still a valid event)
    values = lines(HAPPY)
    env = json.loads(values[2])
    reordered = json.dumps({"data": env.pop("data"), **env}, separators=(",", ":")).encode()
    values = [*values[:2], reordered, *values[3:]]
    # when it is folded the trusted way, then the head was read all the same
    folded, careful = trusted(values)
    assert careful == 0 and same(folded, validating(values))


def test_a_record_whose_head_reads_otherwise_takes_the_validating_path() -> None:
    # given a run's log with one sequence written as 3.0 (the validating path reads it as 3;
    # the head's reader takes integers only)
    values = _edited(lines(HAPPY), 2, sequence=3.0)
    assert b'"sequence":3.0' in values[2]
    # when it is folded the trusted way, then the run went the validating way, to the same end
    folded, careful = trusted(values)
    assert careful == len(values) and same(folded, validating(values))


def test_a_record_that_is_not_json_sends_every_open_run_the_validating_way() -> None:
    # given a run's log with a record cut short half way
    values = lines(HAPPY)
    values = [*values[:3], values[3][:40], *values[4:]]
    # when it is folded the trusted way, then the validating path meets it and refuses it
    with pytest.raises(EventParseError):
        trusted(values)


def test_a_run_created_read_otherwise_by_the_strict_reader_is_entered_from_its_decode() -> None:
    # given a run whose run_created gives its time as seconds since the epoch (the envelope
    # takes it; the strict reader of a run_created does not)
    values = _edited(lines(HAPPY), 0, time=1000)
    # when it is folded the trusted way, then its entry is what the validating path makes
    folded, careful = trusted(values)
    assert careful == 0 and same(folded, validating(values))


def test_a_run_created_whose_data_is_not_one_is_refused() -> None:
    # given a run whose run_created's data has a priority that is no number
    values = lines(HAPPY)
    env = json.loads(values[0])
    env["data"]["priority"] = "high"
    values = [json.dumps(env, separators=(",", ":")).encode(), *values[1:]]
    # when it is folded the trusted way, then it is refused, naming the run and the field
    with pytest.raises(LogCorrupt, match=r"unreadable run_created of run run-\w+: .*priority"):
        trusted(values)


def test_an_input_after_the_end_is_folded_carefully_into_the_index() -> None:
    # given a log whose run had an input after it was cancelled, recorded as ignored
    values = lines(CANCELLED)
    assert b'"input_ignored"' in values[-1]
    # when it is folded the trusted way, then that input went the careful way, to the same end
    folded, careful = trusted(values)
    assert careful == 1 and same(folded, validating(values))


def test_it_needs_a_retiring_state() -> None:
    with pytest.raises(ValueError, match="retiring state"):
        TrustedFold(CoordinatorState(), lambda value: value)


def test_a_run_with_more_records_than_are_kept_open_goes_the_validating_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a fold that keeps at most 5 records of an open run
    from orchestrator.core import trusted_fold
    monkeypatch.setattr(trusted_fold, "OPEN_RECORDS_MAX", 5)
    values = lines(HAPPY)
    # when a run of 30 records is folded, then all of it went the validating way, alike
    folded, careful = trusted(values)
    assert careful == len(values) and same(folded, validating(values))
