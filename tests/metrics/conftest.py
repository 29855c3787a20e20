"""The known log of the pure tests, shared by the figures and their renderings."""

from __future__ import annotations

import pytest

from events import topics
from events.agents import AgentDraining, AgentStopped
from orchestrator.metrics.figures import Figures, GroupLag, compute
from orchestrator.metrics.tally import Tally, observe
from orchestrator.service import log_positions
from tests.metrics.logs import T0, Log, advertised, heartbeat, spec

TRAIN = spec("train", "fetch", "fit", "gate")
ETL = spec("etl", "load")
NOW = T0 + 1000


@pytest.fixture(scope="module")
def log() -> Log:
    """Six runs: train r1 succeeds after a retry of `fit` and a passed gate; r2 fails at once;
    r3's gate rejects; etl r4 runs, r5 is cancelled before starting, r6 waits to start."""
    log = Log()
    log.created("r1", TRAIN, T0)
    log.attempt("r1", "fetch", 1, ready=T0, started=T0 + 2, ended=T0 + 5)
    log.attempt("r1", "fit", 1, ready=T0 + 5, started=T0 + 6, ended=T0 + 8, ok=False)
    log.attempt("r1", "fit", 2, ready=T0 + 9, started=T0 + 10, ended=T0 + 12)
    log.gate("r1", "gate", True, T0 + 12)
    log.ended("r1", "succeeded", T0 + 12)
    log.created("r2", TRAIN, T0 + 100)
    log.attempt("r2", "fetch", 1, ready=T0 + 100, started=T0 + 104, ended=T0 + 105, ok=False,
                final=True)
    log.ended("r2", "failed", T0 + 105)
    log.created("r3", TRAIN, T0 + 200)
    log.attempt("r3", "fetch", 1, ready=T0 + 200, started=T0 + 201, ended=T0 + 202)
    log.attempt("r3", "fit", 1, ready=T0 + 202, started=T0 + 203, ended=T0 + 206)
    log.gate("r3", "gate", False, T0 + 206)
    log.ended("r3", "failed", T0 + 206,
              headers=((log_positions.HEADER, b"baton.intents:0=7,baton.reports:0=40"),))
    log.created("r4", ETL, T0 + 300)
    log.attempt("r4", "load", 1, ready=T0 + 300, started=T0 + 303, ended=T0 + 303)
    log.records.pop()  # r4's load is still running: no end
    log.created("r5", ETL, T0 + 400)
    log.ended("r5", "cancelled", T0 + 401)
    log.created("r6", ETL, T0 + 500)
    log.model("train", 1, T0 + 12, dataset="digits")
    log.model("train", 2, T0 + 206, dataset="digits")
    log.model("etl", 3, T0 + 303, dataset=None)
    first = log.letter("baton.fanout", T0 + 50)
    log.letter("baton.coordinator", T0 + 250)
    log.letter("baton dlq redrive", T0 + 260, redrive_of=first)
    log.raw(topics.DLQ, b"\x00 not a letter", T0 + 270)
    log.agent(advertised("busy"), T0 + 900)
    log.agent(heartbeat("busy", running=("r4/load/1",)), T0 + 995)
    log.agent(advertised("idle"), T0 + 900)
    log.agent(heartbeat("idle"), T0 + 995)
    log.agent(advertised("silent"), T0 + 900)
    log.agent(heartbeat("silent"), T0 + 980)  # 20 s before NOW: past max(10, lease 5 + 3)
    log.agent(advertised("drains"), T0 + 990)
    log.agent(AgentDraining(agent_id="drains", incarnation="i1"), T0 + 991)
    log.agent(advertised("gone"), T0 + 990)
    log.agent(AgentStopped(agent_id="gone", incarnation="i1"), T0 + 992)
    log.agent(advertised("restarted", incarnation="new"), T0 + 990)
    log.agent(AgentStopped(agent_id="restarted", incarnation="old"), T0 + 993)
    return log


def tally_of(log: Log) -> Tally:
    tally = Tally()
    for record in log.records:
        observe(tally, record)
    return tally


@pytest.fixture(scope="module")
def whole(log: Log) -> Figures:
    return compute(tally_of(log), now=NOW, lag=[GroupLag(1, 0, 2), GroupLag(0, 3, 0)])


