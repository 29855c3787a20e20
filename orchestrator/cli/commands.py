"""The subcommands, registered in the order `baton --help` lists them.

A subcommand is registered by its name, its help line and where it is defined: a function
`add_*(parser)` of a module of this package, which adds its flags and its handler. That module
is imported only when its subcommand is the one parsed (`baton publish ...`, or `baton publish
--help`), so each command pays for its own imports and no other's: `baton publish` never loads
numpy (the drift monitor), FastStream (`schema asyncapi`) or the embedded app (`up`). A module
imports at its top what its subcommands need; what one subcommand alone needs and is heavy
gets a module of its own rather than an import inside a function.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    defined_in: str
    """"module:function" in orchestrator.cli; the function takes the subcommand's parser."""

    def define(self, parser: argparse.ArgumentParser) -> None:
        module, _, function = self.defined_in.partition(":")
        getattr(importlib.import_module(f"{__package__}.{module}"), function)(parser)


COMMANDS: tuple[Subcommand, ...] = (
    Subcommand("up", "coordinator and local agents, until Ctrl-C", "processes:add_up"),
    Subcommand("coordinator", "a coordinator process (several share the work on Kafka)",
               "processes:add_coordinator"),
    Subcommand("agent", "a worker agent process", "processes:add_agent"),
    Subcommand("api", "the HTTP API alone, on any bus", "processes:add_api"),
    Subcommand("serve", "serve a model's version by alias over HTTP", "serve:add_serve"),
    Subcommand("tokens", "make API tokens", "tokens:add_tokens"),
    Subcommand("demo", "run the digits example end to end on the embedded bus", "demo:add_demo"),
    Subcommand("publish", "publish a trigger event", "publish:add_publish"),
    Subcommand("run", "request a manual run of a pipeline", "run:add_run"),
    Subcommand("runs", "list and inspect runs", "query:add_runs"),
    Subcommand("models", "model versions and aliases: list, show, promote, rollback, "
               "history, diff", "models:add_models"),
    Subcommand("approve", "decide a run's waiting approval step", "approve:add_approve"),
    Subcommand("lineage", "a model version's whole chain, trigger to alias moves",
               "lineage:add_lineage"),
    Subcommand("openlineage", "send runs, tasks and alias moves as OpenLineage events",
               "openlineage:add_openlineage"),
    Subcommand("mlflow", "mirror the registry to an MLflow tracking server",
               "mlflow:add_mlflow"),
    Subcommand("triggers", "what the trigger router decided, and why a run started",
               "triggers:add_triggers"),
    Subcommand("schedules", "schedules: where each stands; pause, resume, trigger-now",
               "schedules:add_schedules"),
    Subcommand("backfill", "run a pipeline over a stretch of the past (slots or events)",
               "backfill:add_backfill"),
    Subcommand("backfills", "backfills: list, show, pause, resume, cancel",
               "backfill:add_backfills"),
    Subcommand("watch", "stream run events live", "query:add_watch"),
    Subcommand("replay", "rebuild state from the log", "query:add_replay"),
    Subcommand("monitor", "monitors that publish triggers", "monitor:add_monitor"),
    Subcommand("schema", "event schemas", "schema:add_schema"),
    Subcommand("pipelines", "check pipeline definitions", "query:add_pipelines"),
    Subcommand("dlq", "list, inspect and re-drive dead letters", "dlq:add_dlq"),
    Subcommand("metrics", "pipeline metrics computed from the log", "metrics:add_metrics"),
    Subcommand("dev", "local infrastructure for development and tests", "dev:add_dev"),
)


def register(sub: Any) -> None:
    """`sub`: the subparsers action of main's Parser; each parser is defined when parsed."""
    for command in COMMANDS:
        sub.add_parser(command.name, help=command.help).define_when_parsed(command.define)
