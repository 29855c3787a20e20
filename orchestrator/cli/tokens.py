"""`baton tokens add FILE NAME --role ROLE`: a new API token, printed once; only its hash is
kept in FILE (made private), which `baton up --tokens FILE` / `baton api --tokens FILE` read."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from events.pipeline import Role
from orchestrator.api.auth import TokensInvalid, add_token
from orchestrator.cli.errors import UsageError


def add_tokens(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    add = sub.add_parser("add", help="make a token, print it once, keep its hash in FILE")
    add.add_argument("file", type=Path, help="the tokens file (created if missing)")
    add.add_argument("name", help="who holds it: the actor the log records for its writes")
    add.add_argument("--role", choices=get_args(Role), required=True,
                     help="viewer reads; operator also runs, cancels and triggers; admin also "
                          "re-drives dead letters")
    add.set_defaults(handler=tokens_add)


async def tokens_add(args: argparse.Namespace) -> int:
    try:
        token = add_token(args.file, args.name, args.role)
    except TokensInvalid as exc:
        raise UsageError(str(exc)) from None
    print(token)
    return 0
