"""What the soak runs: one manual pipeline and one started by data arrivals, same tasks.

The tasks are the broker fault tests' (tests/kafka/fault_pipelines.py): each appends its
attempt id to the soak's ledger before it works (a data arrival's run has no params, so the
ledger is the file LEDGER_ENV names in the processes' environment), and works for a second, so
faults hit attempts in flight. Retries are generous: the soak kills agents on purpose, and a
run that fails for want of retries would hide what the soak checks.
"""

from __future__ import annotations

from events.pipeline import TriggerSpec
from orchestrator.pipelines import Pipeline, manual, on_data_arrived
from tests.kafka.fault_pipelines import left, prepare, right

DATASET = "soak"


def _fan(name: str, triggers: list[TriggerSpec]) -> Pipeline:
    pipeline = Pipeline(name, deadline_s=1800, triggers=triggers,
                        description="prepare -> (left, right)")
    for fn in (prepare, left, right):
        pipeline.task(cpus=1, memory="64Mi", retries=6, backoff_s=0.2, timeout_s=120)(fn)
    return pipeline


manual_fan = _fan("soak_manual", [manual()])
data_fan = _fan("soak_data", [on_data_arrived(DATASET)])
