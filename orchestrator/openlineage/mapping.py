"""Baton's logs as OpenLineage run events: a START and one of COMPLETE, FAIL or ABORT for every
run (job: the pipeline) and every task (job: pipeline.task; a task that never ran has its
ABORT alone), and a START and COMPLETE for every alias move (job: model.alias in the
registry's namespace). Each run's `parent` facet names the event that triggered it (a job of
the triggers' namespace), each task's the run, each alias move's the run that moved it; the
datasets are the trigger's dataset version (input), each task's artifact (output, versioned
by its sha256) and each registered model version (output). Baton's facets carry the model
version, a gate's decision, a canary's verdict and an alias move (`facets.py`).

Pure of I/O: `apply` folds one envelope of baton.runs or baton.models (with the same `evolve`
as every reader of the run log) and returns the events it makes; the shell sends them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    set_producer,
)
from openlineage.client.facet_v2 import (
    DatasetFacet,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
)

from events import canary as cn
from events import runs as ev
from events.common import ArtifactRef
from events.envelope import Envelope
from events.payloads import Payload
from events.registry import AliasMoved, ModelRegistered
from events.triggers import TriggerInfo
from orchestrator.core.evolve import apply, created_run
from orchestrator.core.models import admitted_by
from orchestrator.core.state import RunState as BatonRun
from orchestrator.openlineage import facets as bf

RUN_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://baton.dev/runs")
"""OpenLineage run ids are UUIDs: Baton's ids map to them by uuid5 in this namespace, so the
same run, task or trigger always has the same one (a re-emission repeats, never forks)."""

set_producer(bf.PRODUCER)


def ol_run_id(key: str) -> str:
    return str(uuid.uuid5(RUN_IDS, key))


@dataclass
class Lineage:
    namespace: str = "baton"
    runs: dict[str, BatonRun] = field(default_factory=dict)
    started: set[tuple[str, str]] = field(default_factory=set)
    """(run, task) whose START was sent."""
    facts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(run, task) -> the Baton facets its end carries (gate, model, canary)."""
    pipelines: dict[str, str] = field(default_factory=dict)
    """Run -> its pipeline, kept after the run ends: an alias move that a run made names it
    as its parent job, and baton.models may be read after the run's end."""

    def apply(self, env: Envelope[Payload]) -> list[RunEvent]:
        """The OpenLineage events one event of baton.runs makes (none for most)."""
        data = env.data
        if isinstance(data, ev.RunCreated):
            created = self.runs[data.run_id] = created_run(data, env)
            self.pipelines[data.run_id] = data.pipeline
            return [self._run_event(created, RunState.START, env, inputs=self._inputs(created))]
        run = self.runs.get(getattr(data, "run_id", ""))
        if run is None:
            return []  # a run created before what this reads
        apply(run, env)
        return self._after(run, env, data)

    def registry(self, env: Envelope[Payload]) -> list[RunEvent]:
        """The OpenLineage events one event of baton.models makes: an alias move's."""
        return self._alias_moved(env, env.data) if isinstance(env.data, AliasMoved) else []

    def _after(self, run: BatonRun, env: Envelope[Payload], data: Payload) -> list[RunEvent]:
        task = getattr(data, "task", None)
        key = (run.run_id, task or "")
        if isinstance(data, ev.TaskStarted) and key not in self.started:
            self.started.add(key)
            return [self._task_event(run, data.task, RunState.START, env)]
        if isinstance(data, ev.GateEvaluated):
            self.facts.setdefault(key, {})["baton_gate"] = bf.BatonGateRunFacet(
                passed=data.passed, baselineVersion=data.baseline_version,
                checks=[{"metric": c.metric, "op": c.op, "threshold": c.threshold,
                         "value": c.value, "passed": c.passed} for c in data.checks])
        elif isinstance(data, ModelRegistered):
            self.facts.setdefault(key, {})["baton_model"] = bf.BatonModelRunFacet(
                model=data.model, version=data.version, metrics=dict(data.metrics),
                artifactSha256=data.artifact.sha256, admittedBy=admitted_by(data))
        elif isinstance(data, cn.CanaryEnded):
            self.facts.setdefault(key, {})["baton_canary"] = _canary_facet(data)
        elif isinstance(data, ev.TaskSucceeded):
            return self._task_end(run, data.task, RunState.COMPLETE, env)
        elif isinstance(data, ev.TaskFailed) and data.final:
            error = error_message_run.ErrorMessageRunFacet(
                message=data.message or data.reason, programmingLanguage="python",
                stackTrace=data.traceback)
            return self._task_end(run, data.task, RunState.FAIL, env, {"errorMessage": error})
        elif isinstance(data, ev.TaskUpstreamFailed | ev.TaskCancelled):
            return self._task_end(run, data.task, RunState.ABORT, env)
        elif isinstance(data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled):
            return self._run_end(run, data, env)
        return []

    # --- runs -----------------------------------------------------------------------------

    def _run_end(self, run: BatonRun, data: Payload, env: Envelope[Payload]) -> list[RunEvent]:
        state = (RunState.COMPLETE if isinstance(data, ev.RunSucceeded) else
                 RunState.FAIL if isinstance(data, ev.RunFailed) else RunState.ABORT)
        extra: dict[str, Any] = {}
        if isinstance(data, ev.RunFailed):
            extra["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=data.reason, programmingLanguage="python")
        outputs = [self._model_dataset(model, version) for model, version in run.models]
        del self.runs[run.run_id]
        self.started = {k for k in self.started if k[0] != run.run_id}
        self.facts = {k: v for k, v in self.facts.items() if k[0] != run.run_id}
        return [self._run_event(run, state, env, facets=extra, outputs=outputs)]

    def _run_event(self, run: BatonRun, state: RunState, env: Envelope[Payload], *,
                   facets: Mapping[str, Any] | None = None,
                   inputs: list[InputDataset] | None = None,
                   outputs: list[OutputDataset] | None = None) -> RunEvent:
        trigger = run.trigger
        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=ol_run_id(f"trigger/{trigger.event_id}")),
            job=parent_run.Job(namespace=f"{self.namespace}.triggers",
                               name=_trigger_job(trigger)))
        return RunEvent(
            eventTime=env.time.isoformat(), eventType=state,
            run=Run(runId=ol_run_id(run.run_id), facets={"parent": parent, **(facets or {})}),
            job=self._job(run.pipeline, "PIPELINE"), inputs=inputs or [],
            outputs=outputs or [], producer=bf.PRODUCER)

    def _inputs(self, run: BatonRun) -> list[InputDataset]:
        """The dataset version the trigger names, if it names one."""
        p = run.trigger.payload
        name = p.get("dataset") or p.get("uri") or p.get("dataset_uri")
        version = p.get("version") or p.get("dataset_version") or p.get("sha256")
        if not isinstance(name, str):
            return []
        facets: dict[str, DatasetFacet] = {} if not isinstance(version, str) else {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)}
        return [InputDataset(namespace=f"{self.namespace}.datasets", name=name, facets=facets)]

    # --- tasks ----------------------------------------------------------------------------

    def _task_end(self, run: BatonRun, task: str, state: RunState, env: Envelope[Payload],
                  extra: Mapping[str, Any] | None = None) -> list[RunEvent]:
        out = []
        key = (run.run_id, task)
        if key not in self.started and state != RunState.ABORT:
            self.started.add(key)  # a gate: decided at once, never placed
            out.append(self._task_event(run, task, RunState.START, env))
        facts = dict(self.facts.pop(key, {}))
        outputs = []
        model = facts.get("baton_model")
        if isinstance(model, bf.BatonModelRunFacet):
            outputs.append(self._model_dataset(model.model, model.version))
        current = run.tasks[task]
        if current.output is not None and state == RunState.COMPLETE:
            outputs.append(_artifact(current.output))
        attempt = current.current
        facts["baton_task"] = bf.BatonTaskRunFacet(
            attempts=len(current.attempts), metrics=dict(current.metrics),
            agent=attempt.agent_id if attempt else None,
            gpus=list(attempt.gpus) if attempt else [])
        out.append(self._task_event(run, task, state, env, {**facts, **(extra or {})},
                                    outputs))
        return out

    def _task_event(self, run: BatonRun, task: str, state: RunState, env: Envelope[Payload],
                    facets: Mapping[str, Any] | None = None,
                    outputs: list[OutputDataset] | None = None) -> RunEvent:
        trigger = run.trigger
        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=ol_run_id(run.run_id)),
            job=parent_run.Job(namespace=self.namespace, name=run.pipeline),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=ol_run_id(f"trigger/{trigger.event_id}")),
                job=parent_run.RootJob(namespace=f"{self.namespace}.triggers",
                                       name=_trigger_job(trigger))))
        return RunEvent(
            eventTime=env.time.isoformat(), eventType=state,
            run=Run(runId=ol_run_id(f"{run.run_id}/{task}"),
                    facets={"parent": parent, **(facets or {})}),
            job=self._job(f"{run.pipeline}.{task}", "TASK"), outputs=outputs or [],
            producer=bf.PRODUCER)

    # --- the registry ---------------------------------------------------------------------

    def _alias_moved(self, env: Envelope[Payload], moved: AliasMoved) -> list[RunEvent]:
        facet = bf.BatonAliasMoveRunFacet(
            model=moved.model, alias=moved.alias, version=moved.version, move=moved.move,
            reason=moved.reason, previous=moved.previous, cites=moved.cites,
            by=moved.audit.actor if moved.audit else
            (f"run {moved.run_id}" if moved.run_id else None))
        facets: dict[str, Any] = {"baton_aliasMove": facet}
        if moved.run_id is not None:
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=ol_run_id(moved.run_id)),
                job=parent_run.Job(namespace=self.namespace, name=self._pipeline_of(moved)))
        run = Run(runId=ol_run_id(f"alias/{env.id}"), facets=facets)
        job = Job(namespace=f"{self.namespace}.registry", name=f"{moved.model}.{moved.alias}",
                  facets={"jobType": job_type_job.JobTypeJobFacet(
                      processingType="BATCH", integration="BATON", jobType="ALIAS_MOVE")})
        outputs = [self._model_dataset(moved.model, moved.version)]
        return [RunEvent(eventTime=env.time.isoformat(), eventType=state, run=run, job=job,
                         outputs=outputs if state == RunState.COMPLETE else [],
                         producer=bf.PRODUCER)
                for state in (RunState.START, RunState.COMPLETE)]

    def _pipeline_of(self, moved: AliasMoved) -> str:
        return self.pipelines.get(moved.run_id or "", "unknown")

    # --- shared -----------------------------------------------------------------------------

    def _job(self, name: str, kind: str) -> Job:
        return Job(namespace=self.namespace, name=name, facets={
            "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH",
                                                     integration="BATON", jobType=kind)})

    def _model_dataset(self, model: str, version: int) -> OutputDataset:
        return OutputDataset(namespace=f"{self.namespace}.models", name=model, facets={
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(version))})


def _trigger_job(trigger: TriggerInfo) -> str:
    return f"{trigger.type}.{trigger.subject}"


def _artifact(ref: ArtifactRef) -> OutputDataset:
    parsed = urlparse(ref.uri)
    namespace = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme else "file"
    return OutputDataset(namespace=namespace, name=parsed.path or ref.uri, facets={
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=ref.sha256)})


def _canary_facet(ended: cn.CanaryEnded) -> bf.BatonCanaryRunFacet:
    report = ended.report
    return bf.BatonCanaryRunFacet(
        model=report.model, version=report.version, baseline=report.baseline,
        alias=report.alias, verdict=ended.verdict, reason=ended.reason,
        steps=[{"percent": s.percent, "verdict": s.verdict,
                "candidateRequests": s.candidate.requests, "candidateErrors": s.candidate.errors,
                "baselineRequests": s.baseline.requests, "baselineErrors": s.baseline.errors}
               for s in report.steps])
