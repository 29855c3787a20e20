"""Commands the coordinator sends: to agents (baton.commands) and to the registry."""

from __future__ import annotations

from pydantic import Field

from events.common import ArtifactRef, JsonObject, Resources
from events.payloads import RunPayload
from events.triggers import TriggerInfo


class ExecuteTask(RunPayload):
    """Run one attempt. Never carries secrets: the log and the bus keep it forever."""

    TYPE = "execute_task"
    agent_id: str
    pipeline: str
    task: str
    attempt: int = Field(ge=1)
    attempt_id: str
    placement: int = Field(ge=1)
    function: str
    inputs: dict[str, ArtifactRef] = Field(default_factory=dict)
    resources: Resources
    gpus: tuple[int, ...] = ()
    """GPU indices the coordinator reserved; the agent uses them if they are free and qualify,
    else others that do (it is the authority), and reports the ones it gave."""
    timeout_s: float | None = None
    not_after: float
    trigger: TriggerInfo
    params: JsonObject = Field(default_factory=dict)
    incarnation: str = ""
    """The process of `agent_id` the coordinator placed it on (the one that advertised the id
    last, events/agents.py): no other process under that id runs it. Empty from coordinators
    before incarnations, and for agents that advertise none: any process of the id may."""


class CancelTask(RunPayload):
    TYPE = "cancel_task"
    agent_id: str
    attempt_id: str
    reason: str
