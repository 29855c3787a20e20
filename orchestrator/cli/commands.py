"""The subcommands, registered in the order `baton --help` lists them."""

from __future__ import annotations

from typing import Any

from orchestrator.cli import demo as demo_cmd
from orchestrator.cli import dev, dlq, processes, produce, query


def register(sub: Any) -> None:
    processes.add_up(sub.add_parser("up", help="coordinator and local agents, until Ctrl-C"))
    processes.add_coordinator(sub.add_parser(
        "coordinator", help="a coordinator process (several share the work on Kafka)"))
    processes.add_agent(sub.add_parser("agent", help="a worker agent process"))
    demo_cmd.add_parser(sub)
    produce.add_publish(sub.add_parser("publish", help="publish a trigger event"))
    produce.add_run(sub.add_parser("run", help="request a manual run of a pipeline"))
    query.add_runs(sub.add_parser("runs", help="list and inspect runs"))
    query.add_models(sub.add_parser("models", help="list registered model versions"))
    query.add_watch(sub.add_parser("watch", help="stream run events live"))
    query.add_replay(sub.add_parser("replay", help="rebuild state from the log"))
    produce.add_monitor(sub.add_parser("monitor", help="monitors that publish triggers"))
    query.add_schema(sub.add_parser("schema", help="event schemas"))
    query.add_pipelines(sub.add_parser("pipelines", help="check pipeline definitions"))
    dlq.add_dlq(sub.add_parser("dlq", help="list, inspect and re-drive dead letters"))
    dev.add_dev(sub)
