"""`--http HOST:PORT`: where `baton up` and `baton api` serve the HTTP API, checked and bound
before anything else starts, so a bad address or a port in use is one line and exit code."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.api.auth import Tokens, TokensInvalid
from orchestrator.api.server import Listen, ListenError, bind, parse_listen, url_of
from orchestrator.api.webhook_sources import Webhooks
from orchestrator.cli.errors import Failed, UsageError

DEFAULT_HTTP = "127.0.0.1:8765"
OFF = "off"


def add_http_flag(p: argparse.ArgumentParser, *, off: bool) -> None:
    default = os.environ.get("BATON_HTTP") or DEFAULT_HTTP
    p.add_argument("--http", type=_listen(off), default=default, metavar="HOST:PORT",
                   help=f"where to serve the HTTP API (default $BATON_HTTP or {DEFAULT_HTTP}; "
                        "port 0 picks a free one; beyond loopback only with --tokens"
                        + ("; 'off' serves none)" if off else ")"))
    p.add_argument("--tokens", type=Path, metavar="FILE",
                   help="API tokens (hashed, each with a role; 'baton tokens add' makes one): "
                        "every call then needs one")
    p.add_argument("--webhooks", type=Path, metavar="FILE",
                   help="webhook sources (YAML or JSON: sources: {NAME: {secrets: [whsec_...] "
                        "or secrets_env: VAR, per_minute: N}}): POST /api/v1/webhooks/NAME "
                        "takes their signed deliveries")


def _listen(off: bool) -> Callable[[str], Listen | None]:
    def parse(text: str) -> Listen | None:
        if off and text == OFF:
            return None
        try:
            return parse_listen(text)
        except ListenError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def api_tokens(args: argparse.Namespace) -> Tokens | None:
    """--tokens, read (a UsageError saying what is wrong with the file), or None."""
    if args.tokens is None:
        return None
    try:
        return Tokens.load(args.tokens)
    except TokensInvalid as exc:
        raise UsageError(str(exc)) from None


def api_webhooks(args: argparse.Namespace) -> Webhooks | None:
    """--webhooks, read (a UsageError saying what is wrong with the file), or None."""
    if getattr(args, "webhooks", None) is None:
        return None
    try:
        return Webhooks.load(args.webhooks)
    except ValueError as exc:
        raise UsageError(f"--webhooks {exc}") from None


@contextlib.contextmanager
def http_socket(args: argparse.Namespace, *, or_any_port: bool = False
                ) -> Iterator[socket.socket | None]:
    """The bound socket (None for --http off), closed when the process ends. `or_any_port`:
    a taken port is replaced by a free one (the demo should not fail for it)."""
    listen: Listen | None = args.http  # argparse converts a string default with `type` too
    if listen is None:
        yield None
        return
    if not listen.loopback and args.tokens is None:
        raise UsageError(
            f"--http {listen.host}:{listen.port} is not a loopback address: without API tokens "
            "the API would take runs and cancels from anyone who can reach it, so it listens on "
            "loopback only (127.0.0.1, ::1 or localhost); pass --tokens FILE (make one with "
            "'baton tokens add FILE NAME --role operator') to serve beyond it")
    try:
        sock = bind(listen)
    except OSError as exc:
        if or_any_port:
            sock = bind(Listen(listen.host, 0))
            with sock:
                yield sock
            return
        raise Failed(f"cannot serve the API on {listen.host}:{listen.port}: {exc.strerror or exc}"
                     " (pass --http HOST:PORT with a free port, e.g. 127.0.0.1:0"
                     + (", or --http off)" if args.command == "up" else ")")) from None
    with sock:
        yield sock


def served(sock: socket.socket | None) -> str:
    return "" if sock is None else f", API at {url_of(sock)}/api/v1, dashboard at {url_of(sock)}/"
