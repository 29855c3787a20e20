"""Without the OTLP variables, tracing costs nothing: no exporter, and the OpenTelemetry SDK
is not even imported by the coordinator or the worker."""

from __future__ import annotations

import subprocess
import sys

from orchestrator.telemetry.exporter import Traces
from tests.e2e.support import REPO, cli_env


def test_no_otlp_endpoint_means_no_trace_export() -> None:
    assert Traces.from_environment({}) is None
    assert Traces.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                    "OTEL_TRACES_EXPORTER": "none"}) is None
    on = Traces.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                  "BATON_PUBLIC_URL": "https://baton.example"})
    assert on is not None and on.public_url == "https://baton.example"


def test_the_coordinator_and_the_worker_do_not_import_the_sdk_when_tracing_is_off() -> None:
    # given a process with no OTLP variables
    env = {k: v for k, v in cli_env().items() if not k.startswith("OTEL_")}
    # when it loads the coordinator and the worker, and starts the worker's tracing
    code = ("import sys; import orchestrator.service.coordinator, agents.worker_process; "
            "from agents import task_tracing; task_tracing.start(); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    # then no OpenTelemetry module was imported
    assert done.stdout.strip() == "[]", done.stdout
