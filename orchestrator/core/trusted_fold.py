"""The trusted fold (#16 point 6): runs-k records Baton wrote itself, folded into a retiring
state without decoding the events of a run that both begins and ends among them.

A retiring state keeps of an ended run only its index entry (core/ended.py): how it ended,
its last sequence number, its correlation id and the digests of the request that made it. A
run whose `run_created` and end are both among the records folded is entered from those
alone: its `run_created` is decoded and validated (its fields make the entry), every other
record of it is only read for its type, version and sequence in the envelope's head, which
Baton writes before `data` in one order (`codec.encode`). Everything else goes to the
validating path (decode, then `evolve`), which also raises LogCorrupt for what is wrong:
a run already in the state, one still live at the end, a record whose head reads otherwise
(another order, an old version, an escape in an id), a sequence out of step, an event after
an end, a run created twice.

It folds to exactly the state the validating path does: the golden logs and the replay
property test fold both ways and compare. What it does not check is the payload of an event
between a run's start and its end; records from outside (the intake's topics) never come
here, and `replay --verify` keeps the validating path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from events import runs as ev
from events.catalog import CATALOG
from events.codec import decode
from events.errors import EventParseError
from orchestrator.core.ended import EndedRun, EndedStatus
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.idempotency import made_by_created
from orchestrator.core.state import CoordinatorState

R = TypeVar("R")

_HEAD: Final = re.compile(
    rb'\{"id":"[^"\\]*","type":"([a-z_]+)","version":(\d+),"time":"[^"\\]*",'
    rb'"source":"[^"\\]*","subject":"([^"\\]*)","correlation_id":(?:null|"[^"\\]*"),'
    rb'"causation_id":(?:null|"[^"\\]*"),"traceparent":(?:null|"[^"\\]*"),'
    rb'"sequence":(\d+),"data":')
"""The envelope's head as `codec.encode` writes it: type, version, subject (the run id),
sequence. Ids hold no quote or backslash in Baton's own records; one that did reads as no
head, and its run takes the validating path."""
OPEN_RECORDS_MAX: Final = 1000
"""Records kept of one open run: a run live for days (progress reported every few seconds)
goes the validating way past this, so what the fold holds stays bounded by its open runs."""
_ENDS: Final[dict[bytes, EndedStatus]] = {
    ev.RunSucceeded.TYPE.encode(): "succeeded", ev.RunFailed.TYPE.encode(): "failed",
    ev.RunCancelled.TYPE.encode(): "cancelled"}
_CREATED: Final = ev.RunCreated.TYPE.encode()
_CURRENT: Final[dict[bytes, bytes]] = {name.encode(): str(cls.VERSION).encode()
                                       for name, cls in CATALOG.types.items()}
"""Each event type's current version, as the head writes it: an older one is upcast by the
validating path."""


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
        for record in records:
            value = self.value_of(record)
            head = _HEAD.match(value)
            if head is None:  # whose run it is is not known: every open run goes careful
                careful += [*self.finish(), record]
                continue
            kind, version, subject, sequence = head.groups()
            run_id, seq = subject.decode(), int(sequence)
            if _CURRENT.get(kind) != version or run_id in self._careful:
                careful += self._careful_run(run_id, record)
            elif kind == _CREATED:
                if (run_id in self._open or run_id in self.state.runs
                        or run_id in self.state.ended):
                    careful += self._careful_run(run_id, record)
                else:
                    self._open[run_id] = _Open([record], seq)
            elif (opened := self._open.get(run_id)) is None or seq != opened.seq + 1:
                careful += self._careful_run(run_id, record)
            elif (status := _ENDS.get(kind)) is not None:
                del self._open[run_id]
                self.state.ended.add(self._entry(opened.records[0], run_id, status, seq))
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
        try:
            env = decode(self.value_of(created))
        except EventParseError as exc:
            raise LogCorrupt(f"unreadable run_created of run {run_id}: {exc}") from exc
        data = env.data
        if not isinstance(data, ev.RunCreated) or data.run_id != run_id:
            raise LogCorrupt(f"event {env.id}: its head says run_created of {run_id}, its "
                             "data otherwise")
        return EndedRun(run_id, status, seq, data.trigger.event_id, made_by_created(data))
