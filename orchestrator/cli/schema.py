"""`baton schema export|asyncapi`: the event contract as JSON Schemas, the topics as AsyncAPI.

Its own module: the AsyncAPI document is FastStream's, which no other command should load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bus import asyncapi, parse_bus_url
from events.schema import export_json_schemas
from orchestrator.cli.errors import UsageError


def add_schema(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ex = sub.add_parser("export", help="write one JSON Schema per event type")
    ex.add_argument("directory", type=Path)
    ex.set_defaults(handler=schema_export)
    api = sub.add_parser("asyncapi", help="write the AsyncAPI document of Baton's Kafka topics")
    api.add_argument("--out", type=Path, help="file to write (default: standard output)")
    api.add_argument("--format", choices=asyncapi.FORMATS,
                     help="json or yaml (default: json for a --out ending in .json, else yaml)")
    api.set_defaults(handler=schema_asyncapi)


async def schema_export(args: argparse.Namespace) -> int:
    try:
        written = export_json_schemas(args.directory)
    except OSError as exc:
        raise UsageError(f"cannot write to {args.directory}: {exc.strerror}") from None
    print(f"wrote {len(written)} schemas to {args.directory}")
    return 0


async def schema_asyncapi(args: argparse.Namespace) -> int:
    """Servers and topic names follow --bus when it names Kafka; placeholders otherwise."""
    kafka = parse_bus_url(args.bus)
    servers = kafka.bootstrap.split(",") if kafka else asyncapi.DEFAULT_SERVERS
    try:
        doc = asyncapi.build(servers, kafka.namespace if kafka else "")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fmt: asyncapi.Format = "json" if args.out and args.out.suffix == ".json" else "yaml"
    fmt = args.format or fmt
    text = asyncapi.render(doc, fmt)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote AsyncAPI {doc.asyncapi} ({fmt}, {len(doc.channels)} channels) to {args.out}")
    return 0
