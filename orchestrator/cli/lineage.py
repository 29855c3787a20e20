"""`baton lineage MODEL@VERSION|MODEL@ALIAS [--json]`: a model version's whole chain."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.models import read_registry
from orchestrator.cli.projection import caught_up_projection
from orchestrator.lineage import chain
from orchestrator.model_docs import iso
from orchestrator.printable import printable
from orchestrator.store import queries
from orchestrator.store.projections import connect


def add_lineage(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODEL@VERSION|MODEL@ALIAS",
                   help="a version (digits-classifier@2, or @v2) or what an alias points at "
                        "(digits-classifier@champion)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=lineage)


async def lineage(args: argparse.Namespace) -> int:
    name, sep, which = str(args.target).rpartition("@")
    if not sep or not name or not which:
        raise UsageError(f"{args.target!r}: give MODEL@VERSION or MODEL@ALIAS "
                         "(e.g. digits-classifier@champion)")
    registry = await read_registry(args)
    state = registry.models.get(name)
    if state is None:
        known = ", ".join(sorted(registry.models)) or "none yet"
        raise NotFound(f"no model {name!r} is registered (models: {known})")
    digits = which.removeprefix("v")
    version = int(digits) if digits.isdigit() else state.holder(which)
    if version is None or version not in state.versions:
        raise NotFound(f"{name}@{which}: no such version or alias (versions: "
                       f"{', '.join(f'v{v}' for v in sorted(state.versions))}; aliases: "
                       f"{', '.join(sorted(state.holders)) or 'none'})")
    conn = await connect(await caught_up_projection(args))
    try:
        run = await queries.run_doc(conn, state.versions[version].data.run_id)
    finally:
        await conn.close()
    doc = chain(name, state, version, run)
    if args.json:
        print(json.dumps(doc, indent=2))
    for line in [] if args.json else _text(doc):
        print(printable(line))
    return 0


def _text(d: dict[str, Any]) -> list[str]:
    trigger, data, pipe = d["trigger"], d["dataset"], d["pipeline"]
    figures = {k: v for k, v in trigger["payload"].items() if k in ("score", "threshold",
                                                                     "method", "version")}
    archived = "archived, " if d["status"] == "archived" else ""
    lines = [f"{d['model']} v{d['version']} ({archived}registered {iso(d['registered_at'])})",
             f"  trigger    {trigger['type']} {trigger['event_id']} ({trigger['subject']})"
             + (f" {figures}" if figures else ""),
             f"  dataset    {data['name']}@{data['version']} sha256 {data['sha256']}",
             f"  pipeline   {pipe['name']} version {pipe['version']}, run {d['run_id']}"]
    for a in d["attempts"]:
        gpus = f" GPUs {a['gpus']}" if a["gpus"] else ""
        lines.append(f"  attempt    {a['task']}: {a['attempt_id']} on {a['agent'] or '?'}"
                     f"{gpus}")
    lines.append(f"  model      {d['model_artifact']['uri']} "
                 f"(sha256 {d['model_artifact']['sha256'][:16]}...)")
    metrics = " ".join(f"{k}={v:.4f}" for k, v in d["evaluation"]["metrics"].items())
    lines.append(f"  evaluated  {metrics} on set {d['evaluation']['eval_set'] or 'unnamed'}")
    gate, approval = d["gate"], d["approval"]
    lines.append("  gate       " + (f"{'passed' if gate['passed'] else 'failed'} "
                                    f"({gate['event_id']})" if gate else "none"))
    if approval:
        lines.append(f"  approval   {'approved' if approval['approved'] else 'rejected'} by "
                     f"{approval['by'] or 'its timeout policy'} ({approval['event_id']})")
    for m in d["alias_moves"]:
        who = m["actor"] or (f"run {m['run_id']}" if m["run_id"] else "?")
        lines.append(f"  alias      {iso(m['at'])} {m['alias']}: "
                     f"{'v' + str(m['previous']) if m['previous'] else 'nothing'} -> "
                     f"v{m['version']} ({m['move']} by {who})")
    return lines
