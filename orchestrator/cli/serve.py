"""`baton serve --model NAME [--alias champion] [--http HOST:PORT]`: the serving gateway, its
own process. It follows the registry's log and answers with the version the alias points at,
switching when the alias moves (the new version loaded and warmed up first)."""

from __future__ import annotations

import argparse
import re

from agents.artifacts import ArtifactStore
from events.common import ALIAS_PATTERN
from orchestrator.api.server import Listen, ListenError, bind, parse_listen, url_of
from orchestrator.cli.context import home_of, open_bus_patiently
from orchestrator.cli.errors import UsageError
from orchestrator.cli.signals import stop_on_signals
from orchestrator.core.models import CHAMPION
from orchestrator.serving.service import WINDOW_S, run_gateway
from orchestrator.serving.versions import Versions

DEFAULT_HTTP = "127.0.0.1:8766"


def add_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the registered model to serve")
    p.add_argument("--alias", default=CHAMPION, type=_alias,
                   help=f"which of its versions: the one this alias points at (default "
                        f"{CHAMPION})")
    p.add_argument("--http", type=_listen, default=DEFAULT_HTTP, metavar="HOST:PORT",
                   help=f"where to serve (default {DEFAULT_HTTP}; port 0 picks a free one)")
    p.add_argument("--window", type=_seconds, default=WINDOW_S, metavar="S",
                   help=f"how often each version's aggregates go to baton.serving (default "
                        f"{WINDOW_S:g} s)")
    p.set_defaults(handler=serve_model)


async def serve_model(args: argparse.Namespace) -> int:
    try:
        sock = bind(args.http)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.http.host}:{args.http.port}: "
                         f"{exc.strerror} (pick another --http, or port 0)") from None
    stop = stop_on_signals()
    bus = await open_bus_patiently(args)
    versions = Versions(ArtifactStore(home_of(args).artifacts), args.model, args.alias,
                        say=lambda line: print(line, flush=True))
    url = url_of(sock)
    print(f"baton serve: {args.model}@{args.alias} at {url}/v1/models/{args.model}:predict; "
          "Ctrl-C to stop", flush=True)
    try:
        await run_gateway(bus, versions, sock, stop, args.window)
    finally:
        sock.close()
        await bus.close()
    return 0


def _listen(text: str) -> Listen:
    try:
        return parse_listen(text)
    except ListenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _alias(text: str) -> str:
    if not re.fullmatch(ALIAS_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an alias name (e.g. champion)")
    return text
