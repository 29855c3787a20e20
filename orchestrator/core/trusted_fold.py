"""The trusted fold (#16 point 6): runs-k records Baton wrote itself, folded into a retiring
state without decoding the events of a run that both begins and ends among them.

A retiring state keeps of an ended run only its index entry (core/ended.py): how it ended,
its last sequence number, its correlation id and the digests of the request that made it. A
run whose `run_created` and end are both among the records folded is entered from those
alone: its `run_created`'s envelope is read strictly and its `data` validated (its fields make
the entry), every other record of it is only read for its head (type, version, subject,
sequence) by msgspec, which checks the whole record is JSON but builds nothing of the rest.
Everything else goes to the validating path (decode, then `evolve`), which also raises
LogCorrupt for what is wrong: a run already in the state, one still live at the end, a
record whose head reads otherwise (not JSON, a field missing or of another type, an old
version), a sequence out of step, an event after an end, a run created twice.

It folds to exactly the state the validating path does: the golden logs and the replay
property test fold both ways and compare. What it does not check is the rest of an event
between a run's start and its end (its payload, and the envelope's fields past its head);
records from outside (the intake's topics) never come here, and `replay --verify` keeps the
validating path.

Why msgspec for the head: one regex over the head was a third of the fold's time (~1.7 µs a
record, scanning every id and time a character at a time in `re`); msgspec reads it in
~0.7 µs, whatever the fields' order. Why only `data` through pydantic for the `run_created`:
the envelope's own validation was half of that event's decode (its `time` a datetime).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Final, Generic, TypeVar

import msgspec
from pydantic import ValidationError

from events import runs as ev
from events.catalog import CATALOG
from events.codec import decode
from events.errors import EventParseError
from orchestrator.core.ended import EndedRun, EndedStatus
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.idempotency import made_by_created
from orchestrator.core.state import CoordinatorState

R = TypeVar("R")


class _Head(msgspec.Struct):
    """What the fold reads of every record (the rest of it is skipped, once known JSON)."""

    type: str
    version: int
    subject: str
    """The run id, on runs-k."""
    sequence: int


class _CreatedEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    """A `run_created` as Baton writes it, its `data` left for pydantic (`Envelope`'s fields,
    held as strictly: one that reads otherwise goes the careful way, `codec.decode`)."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    type: str
    version: int
    time: datetime
    source: str
    subject: str
    sequence: Annotated[int, msgspec.Meta(ge=1)]
    data: msgspec.Raw
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


_HEAD_OF: Final = msgspec.json.Decoder(_Head)
_CREATED_OF: Final = msgspec.json.Decoder(_CreatedEnvelope)
OPEN_RECORDS_MAX: Final = 1000
"""Records kept of one open run: a run live for days (progress reported every few seconds)
goes the validating way past this, so what the fold holds stays bounded by its open runs."""
_ENDS: Final[dict[str, EndedStatus]] = {
    ev.RunSucceeded.TYPE: "succeeded", ev.RunFailed.TYPE: "failed",
    ev.RunCancelled.TYPE: "cancelled"}
_CREATED: Final = ev.RunCreated.TYPE
_CURRENT: Final[dict[str, int]] = {name: cls.VERSION for name, cls in CATALOG.types.items()}
"""Each event type's current version: an older one is upcast by the validating path."""


@dataclass(slots=True)
class _Open(Generic[R]):
    """A run created among the records folded, not ended yet: its records, as they came."""

    records: list[R]
    seq: int


@dataclass
class TrustedFold(Generic[R]):
    """Sorts records (any type R whose bytes `value_of` gives) into what it enters in `state`
    itself and what the caller must fold through the validating path, in the order returned
    (per run, the log's order)."""

    state: CoordinatorState
    value_of: Callable[[R], bytes]
    _open: dict[str, _Open[R]] = field(default_factory=dict)
    _careful: set[str] = field(default_factory=set)
    """Runs the validating path folds from here on (their records after a surprise)."""

    def __post_init__(self) -> None:
        if not self.state.retire:
            raise ValueError("the trusted fold enters ended runs in the index: it needs a "
                             "retiring state (CoordinatorState(retire=True))")

    def take(self, records: Iterable[R]) -> list[R]:
        """Enters the runs that end among `records` (with the ones taken before); returns
        what the validating path must fold, now, before the next `take`."""
        careful: list[R] = []
        opened_runs, careful_runs, state = self._open, self._careful, self.state
        head_of, value_of = _HEAD_OF.decode, self.value_of
        for record in records:
            try:
                head = head_of(value_of(record))
            except msgspec.DecodeError:  # whose run it is is not known: every open run goes
                careful += [*self.finish(), record]  # careful
                continue
            kind, run_id, seq = head.type, head.subject, head.sequence
            if _CURRENT.get(kind) != head.version or run_id in careful_runs:
                careful += self._careful_run(run_id, record)
            elif kind == _CREATED:
                if run_id in opened_runs or run_id in state.runs or run_id in state.ended:
                    careful += self._careful_run(run_id, record)
                else:
                    opened_runs[run_id] = _Open([record], seq)
            elif (opened := opened_runs.get(run_id)) is None or seq != opened.seq + 1:
                careful += self._careful_run(run_id, record)
            elif (status := _ENDS.get(kind)) is not None:
                del opened_runs[run_id]
                state.ended.add(self._entry(opened.records[0], run_id, status, seq))
            elif len(opened.records) >= OPEN_RECORDS_MAX:
                careful += self._careful_run(run_id, record)
            else:
                opened.records.append(record)
                opened.seq = seq
        return careful

    def finish(self) -> list[R]:
        """The runs still open at the end (live runs): every record of each, for the
        validating path to fold."""
        left = [record for opened in self._open.values() for record in opened.records]
        self._careful.update(self._open)
        self._open.clear()
        return left

    def _careful_run(self, run_id: str, record: R) -> list[R]:
        """`record`, after what was kept of its run (if open): from now on the run is the
        validating path's."""
        self._careful.add(run_id)
        opened = self._open.pop(run_id, None)
        return [*(opened.records if opened else ()), record]

    def _entry(self, created: R, run_id: str, status: EndedStatus, seq: int) -> EndedRun:
        value = self.value_of(created)
        try:
            data: object = ev.RunCreated.model_validate_json(
                bytes(_CREATED_OF.decode(value).data))
        except (msgspec.DecodeError, ValidationError):  # the careful way says what is wrong
            try:
                data = decode(value).data
            except EventParseError as exc:
                raise LogCorrupt(f"unreadable run_created of run {run_id}: {exc}") from exc
        if not isinstance(data, ev.RunCreated) or data.run_id != run_id:
            raise LogCorrupt(f"the run_created of run {run_id}: its head says run_created of "
                             f"{run_id}, its data otherwise")
        return EndedRun(run_id, status, seq, data.trigger.event_id, made_by_created(data))
