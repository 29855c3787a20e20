"""adopt: the live state takes a decision's scratch runs instead of folding its events again.

decide folds every event it logs into scratch copies of the runs it touches, and plays each
attempt it moves over its agent's attempts (core/decision.py), so when it returns, the state
its events lead to already exists. Folding the same events again through `evolve` cost the
coordinator's loop about a quarter of its core CPU per input, and a new run's index was
built twice. The log stays the truth: a takeover, `replay --verify` and `bench replay` fold
it with `evolve`, and adopting must leave exactly the state that fold gives
(tests/core/test_adopt_property.py holds the two equal, indexes included).
"""

from __future__ import annotations

from orchestrator.core import index
from orchestrator.core.decision import Decision
from orchestrator.core.evolve import InFlight, moved, retire
from orchestrator.core.state import CoordinatorState, RunState


def adopt(state: CoordinatorState, d: Decision) -> None:
    """Make `d`'s outcome the live state: what `evolve` of each of its logged events gives.
    `d` must be decided on `state` as it is now, and is used up (its runs become live)."""
    for run_id, scratch in d.scratch.items():
        live = state.runs.get(run_id)
        if live is None:  # created by this decision: the scratch run is the run
            state.runs[run_id] = live = scratch
        elif scratch.seq == live.seq:
            continue  # copied but nothing logged (a tick copies every running run)
        else:
            _carry(live, scratch)
        assert scratch.index is not None
        index.adopt(live, scratch.index)
        if live.status == "running":
            state.active.add(run_id)
        else:
            state.active.discard(run_id)
            if state.retire:
                retire(state, live)
    for run_id, ended in d.ended.items():
        state.ended.bump(run_id, ended.seq)
    _adopt_in_flight(d.lent.in_flight, d)


def _carry(live: RunState, scratch: RunState) -> None:
    """Into the live run (which others may hold), what folding the copy's events changed."""
    assert scratch.index is not None and scratch.index.touched is not None
    live.seq, live.status, live.reason = scratch.seq, scratch.status, scratch.reason
    live.finished_at, live.ignored, live.models = (scratch.finished_at, scratch.ignored,
                                                   scratch.models)
    live.gates, live.approvals, live.audit = scratch.gates, scratch.approvals, scratch.audit
    live.canaries = scratch.canaries
    live.seen.update(scratch.seen)  # a copy holds only the input ids it added
    for name in scratch.index.touched:
        live.tasks[name] = scratch.tasks[name]


def _adopt_in_flight(in_flight: InFlight, d: Decision) -> None:
    """Agents' active attempts as the decision left them: its views where it built one
    (`Decision.agent_view`), its waiting moves played on the others. An agent gets an entry
    where `evolve` would have made one (its first attempt: `Decision.joined`), in that order."""
    for agent_id in d.joined:
        in_flight[agent_id] = {}
    for agent_id, view in d.in_flight.items():
        if agent_id in in_flight:
            in_flight[agent_id] = view
    for agent_id, moves in d.moves.items():
        attempts = in_flight.get(agent_id)
        if attempts is not None:  # none: every move is one off an agent holding nothing
            for attempt_id, attempt in moves:
                moved(attempts, attempt_id, attempt)
