"""`baton models list|show|promote|rollback|history|diff`: the registry as its log says.

Reads fold baton.models (`orchestrator/core/models.py`), so `show --at` answers for any past
time; promote and rollback ask the registry (a compare-and-set against the holder this
command saw) and print its answer: the move, or why it refused and how to fix it.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

from events.common import ALIAS_PATTERN
from events.registry import (
    AliasMoved,
    ArchiveVersion,
    PromoteModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
    VersionArchived,
)
from orchestrator.cli.context import open_bus, operator
from orchestrator.cli.errors import UsageError
from orchestrator.cli.options import instant
from orchestrator.core.models import CHAMPION, ModelRegistry, ModelState, Outcome, admitted_by
from orchestrator.model_docs import diff_rows, history_docs, iso, version_doc
from orchestrator.printable import printable
from orchestrator.service.model_requests import asked, registry_of

WAIT_S = 10.0
ModelRequest = PromoteModel | RollbackAlias | ArchiveVersion | SetTraffic


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="(list) one JSON document")
    p.set_defaults(handler=models_list)
    sub = p.add_subparsers(dest="action", parser_class=type(p))
    listing = sub.add_parser("list", help="every version of every model, with its aliases")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=models_list)
    show = sub.add_parser("show", help="a model's versions and where its aliases point")
    show.add_argument("model")
    show.add_argument("--at", type=instant, help="where the aliases pointed at this time "
                      "(ISO 8601, e.g. 2026-12-01T09:30:00Z)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=models_show)
    promote = sub.add_parser("promote", help="point an alias at a version its gate admitted")
    promote.add_argument("model")
    promote.add_argument("version", type=_version)
    promote.add_argument("--alias", default=CHAMPION, type=_alias,
                         help=f"which alias (default {CHAMPION})")
    promote.add_argument("--reason", required=True, help="why: recorded with the move")
    promote.add_argument("--wait", type=float, default=WAIT_S, metavar="S",
                         help=f"how long to wait for the registry's answer (default {WAIT_S})")
    promote.set_defaults(handler=models_promote)
    back = sub.add_parser("rollback", help="move an alias back to its previous holder")
    back.add_argument("model")
    back.add_argument("--alias", default=CHAMPION, type=_alias)
    back.add_argument("--reason", required=True, help="why: recorded with the move")
    back.add_argument("--wait", type=float, default=WAIT_S, metavar="S")
    back.set_defaults(handler=models_rollback)
    archive = sub.add_parser("archive", help="retire a version: it can no longer be promoted")
    archive.add_argument("model")
    archive.add_argument("version", type=_version)
    archive.add_argument("--reason", required=True, help="why: recorded with it")
    archive.add_argument("--wait", type=float, default=WAIT_S, metavar="S")
    archive.set_defaults(handler=models_archive)
    split = sub.add_parser("traffic", help="split the gateways' traffic with a candidate "
                           "version, or mirror it")
    split.add_argument("model")
    split.add_argument("--candidate", type=_version, help="the version that gets --percent")
    split.add_argument("--percent", type=int, default=0, choices=range(101),
                       metavar="0-100", help="share of requests to the candidate (default 0)")
    split.add_argument("--mirror", type=_version,
                       help="a version that gets a copy of every request (answers recorded, "
                            "never returned)")
    split.add_argument("--reason", required=True)
    split.add_argument("--wait", type=float, default=WAIT_S, metavar="S")
    split.set_defaults(handler=models_traffic)
    history = sub.add_parser("history", help="every move of a model's aliases, oldest first")
    history.add_argument("model")
    history.add_argument("--alias", type=_alias, help="one alias only")
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=models_history)
    diff = sub.add_parser("diff", help="two versions' metrics and lineage side by side")
    diff.add_argument("model")
    diff.add_argument("a", type=_version, metavar="VERSION")
    diff.add_argument("b", type=_version, metavar="VERSION")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=models_diff)


async def models_list(args: argparse.Namespace) -> int:
    registry = await read_registry(args)
    items = [version_doc(state, v) for _, state in sorted(registry.models.items())
             for v in sorted(state.versions)]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for m in items:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items())
        aliases = f"  [{', '.join(m['aliases'])}]" if m["aliases"] else ""
        print(printable(f"{m['model']} v{m['version']}{aliases}  {metrics}  run {m['run_id']}"
                        f"  dataset {m['lineage'].get('dataset')}@"
                        f"{m['lineage'].get('dataset_version')}"))
    if not items:
        print("no models registered yet")
    return 0


async def models_show(args: argparse.Namespace) -> int:
    state = _model(await read_registry(args), args.model)
    at = args.at.timestamp() if args.at else None
    aliases = {alias: state.holder(alias, at) for alias in sorted(state.holders)}
    doc = {"model": args.model, "at": args.at.isoformat() if args.at else None,
           "aliases": aliases, "versions": [version_doc(state, v) for v in
                                             sorted(state.versions)]}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    when = f" at {doc['at']}" if args.at else ""
    print(printable(f"{args.model}{when}: " + (", ".join(
        f"{a} -> {_v(v)}" for a, v in aliases.items()) or "no aliases")))
    for item in doc["versions"]:
        gate = item["gate"]
        admitted = (f"gate {'passed' if gate['passed'] else 'failed'} ({gate['event_id']})"
                    if gate else "no gate")
        metrics = " ".join(f"{k}={v:.4f}" for k, v in item["metrics"].items())
        print(printable(f"  v{item['version']}  {admitted}  {metrics}  run {item['run_id']}"))
    return 0


async def models_promote(args: argparse.Namespace) -> int:
    def request(state: ModelState) -> PromoteModel:
        version = state.versions.get(args.version)
        cites = admitted_by(version.data) if version is not None else None
        return PromoteModel(model=args.model, alias=args.alias, version=args.version,
                            expected=state.holder(args.alias), cites=cites or "none",
                            reason=args.reason, audit=operator())
    return await _ask(args, request)


async def models_rollback(args: argparse.Namespace) -> int:
    return await _ask(args, lambda state: RollbackAlias(
        model=args.model, alias=args.alias, expected=state.holder(args.alias),
        reason=args.reason, audit=operator()))


async def models_archive(args: argparse.Namespace) -> int:
    return await _ask(args, lambda _: ArchiveVersion(
        model=args.model, version=args.version, reason=args.reason, audit=operator()))


async def models_traffic(args: argparse.Namespace) -> int:
    return await _ask(args, lambda _: SetTraffic(
        model=args.model, candidate=args.candidate, percent=args.percent, mirror=args.mirror,
        reason=args.reason, audit=operator()))


async def _ask(args: argparse.Namespace,
               request: Callable[[ModelState], ModelRequest]
               ) -> int:
    """The request made from the registry as this command reads it (the holder it saw is
    what the registry compares with), asked, and its answer printed."""
    bus = await open_bus(args)
    try:
        state = _model(await registry_of(bus), args.model)
        return _said(await asked(bus, request(state), args.wait, "baton.cli"), args.wait)
    finally:
        await bus.close()


async def models_history(args: argparse.Namespace) -> int:
    state = _model(await read_registry(args), args.model)
    entries = history_docs(state, args.alias)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for m in entries:
        who = m["actor"] or (f"run {m['run_id']}" if m.get("run_id") else "?")
        if m["move"] == "refused":
            print(printable(f"{iso(m['at'])}  {m['alias']}: {m['request']} by {who} refused: "
                            f"{m['reason']}"))
            continue
        cites = f" citing {m['cites']}" if m["cites"] else ""
        print(printable(f"{iso(m['at'])}  {m['alias']}: {_v(m['previous'])} -> v{m['version']}  "
                        f"{m['move']} by {who}{cites}: {m['reason']}"))
    if not entries:
        print(printable(f"{args.model}: no alias has moved yet"))
    return 0


async def models_diff(args: argparse.Namespace) -> int:
    state = _model(await read_registry(args), args.model)
    docs = []
    for v in (args.a, args.b):
        if v not in state.versions:
            raise UsageError(f"{args.model} has no v{v} (its versions: "
                             f"{', '.join(f'v{n}' for n in sorted(state.versions))})")
        docs.append(version_doc(state, v))
    rows = diff_rows(docs[0], docs[1])
    if args.json:
        print(json.dumps({"model": args.model, "a": docs[0], "b": docs[1],
                          "rows": [{"field": f, "a": a, "b": b, "same": a == b}
                                   for f, a, b in rows]}, indent=2))
        return 0
    width = max(len(f) for f, _, _ in rows)
    column = max(len(_cell(a)) for _, a, _ in rows) + 2
    print(printable(f"{'':{width}}  {'v' + str(args.a):{column}}v{args.b}"))
    for field, a, b in rows:
        mark = " " if a == b else "*"  # the rows that differ
        print(printable(f"{field:{width}} {mark}{_cell(a):{column}}{_cell(b)}"))
    return 0


# ------------------------------------------------------------------------------ helpers

async def read_registry(args: argparse.Namespace) -> ModelRegistry:
    """The registry as the bus `args` name says now (every read of `baton models`)."""
    bus = await open_bus(args)
    try:
        return await registry_of(bus)
    finally:
        await bus.close()


def _model(registry: ModelRegistry, name: str) -> ModelState:
    if name not in registry.models:
        known = ", ".join(sorted(registry.models)) or "none yet"
        raise UsageError(f"no model {name!r} is registered (models: {known})")
    return registry.models[name]


def _said(answer: Outcome | None, wait_s: float) -> int:
    if answer is None:
        raise UsageError(f"the registry did not answer within {wait_s:g} s: is a coordinator "
                         "(`baton up`) running on this bus? The request stays queued and is "
                         "answered once one runs (see `baton models history`)")
    if isinstance(answer, AliasMoved):
        print(printable(f"{answer.model}: {answer.alias} {_v(answer.previous)} -> "
                        f"v{answer.version} ({answer.move})"))
        return 0
    if isinstance(answer, VersionArchived):
        print(printable(f"{answer.model}: v{answer.version} archived"))
        return 0
    if isinstance(answer, TrafficSet):
        split = (f"{answer.percent}% to v{answer.candidate}" if answer.candidate
                 else "all to the alias")
        mirror = f", mirrored to v{answer.mirror}" if answer.mirror else ""
        print(printable(f"{answer.model}: traffic {split}{mirror}"))
        return 0
    raise UsageError(f"the registry refused: {printable(answer.reason)}")










def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _v(version: int | None) -> str:
    return "nothing" if version is None else f"v{version}"




def _version(text: str) -> int:
    digits = text.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: give 1, 2, ... (or v1)")
    return int(digits)


def _alias(text: str) -> str:
    if not re.fullmatch(ALIAS_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an alias name: lower-case letters, digits, '_' and '-', starting "
            "with a letter (e.g. champion, staging)")
    return text
