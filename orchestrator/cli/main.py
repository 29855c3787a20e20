"""Entry point: parse, dispatch, and turn every user error into one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from bus import EMBEDDED, BusError, BusUrlError, parse_bus_url
from events.errors import EventParseError
from orchestrator.cli import commands
from orchestrator.cli.errors import Failed, NotFound, UsageError
from orchestrator.core.errors import LogCorrupt, SpecError
from orchestrator.printable import printable
from orchestrator.service.supervise import ComponentFailed


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line with the fix, and exit code 2; and a subcommand's
    flags may wait until it is the one being parsed (`define_when_parsed`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._define: Callable[[argparse.ArgumentParser], None] | None = None

    def define_when_parsed(self, define: Callable[[argparse.ArgumentParser], None]) -> None:
        """`define(self)` adds the flags and the handler just before this parser parses (the
        parent's subparsers action hands it the rest of the command line, `--help` included),
        so neither `baton --help` nor another subcommand imports what this one needs."""
        self._define = define

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._define is not None:
            define, self._define = self._define, None
            define(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def bus_url(value: str) -> str:
    """--bus / $BATON_BUS, checked while parsing: a bad one is a usage error (exit 2)."""
    try:
        parse_bus_url(value)
    except BusUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> Parser:
    parser = Parser(prog="baton", description="Event-driven, event-sourced ML pipelines.")
    parser.add_argument("--home", help="state directory (default $BATON_HOME or ./.baton)")
    parser.add_argument("--bus", type=bus_url, default=os.environ.get("BATON_BUS") or EMBEDDED,
                        help="the bus: 'embedded' (in the home) or 'kafka://HOST:PORT"
                             "[?partitions=N&namespace=NS]' (default $BATON_BUS or embedded)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # aiokafka logs transient trouble (a group coordinator still being elected, a broker
        # restarting) as ERROR while it retries; what we cannot recover from reaches us as
        # BusError and is reported in one line.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return int(asyncio.run(args.handler(args)) or 0)
    except UsageError as exc:
        sys.stderr.write(f"baton {args.command}: error: {exc}\n")
        return 2
    except EventParseError as exc:
        # Commands that publish name the flag themselves (cli/given.py); this catches the rest.
        sys.stderr.write(f"baton {args.command}: error: the bus would refuse this: "
                         f"{printable(str(exc))} (nothing was published)\n")
        return 2
    except SpecError as exc:
        sys.stderr.write(f"baton {args.command}: invalid pipeline: {exc}\n")
        return 2
    except (NotFound, Failed) as exc:
        sys.stderr.write(f"baton {args.command}: {exc}\n")
        return 1
    except LogCorrupt as exc:
        sys.stderr.write(f"baton {args.command}: the event log does not fold: {exc} (check it "
                         "with 'baton replay --verify'; a projection from an older Baton can "
                         "be rebuilt by deleting projections.db)\n")
        return 1
    except BusError as exc:
        sys.stderr.write(f"baton {args.command}: the event log cannot be used: {exc}\n")
        return 1
    except ComponentFailed as exc:
        sys.stderr.write(f"baton {args.command}: stopped: {exc} (run it with -v for the "
                         "details; a restart retries, and on Kafka another coordinator takes "
                         "its partition groups over)\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`baton runs list | head`): stop quietly, as `cat` does;
        # stdout goes to /dev/null so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
