"""Flag parsing shared by several subcommands, with errors that say how to fix them.

The flags of the commands that run agents are in agent_flags.py: they need the agent runtime.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.cli.errors import UsageError
from orchestrator.datasets import file_digest
from orchestrator.printable import printable


def key_values(items: list[str], flag: str = "--param", example: str = "epochs=3"
               ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: write it as KEY=VALUE, e.g. {flag} {example}")
        out[key] = value
    return out


def scalar(text: str) -> str | int | float | bool:
    """A metadata value: a JSON number or boolean when it reads as one, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) else text


def file_facts(location: str, flag: str) -> tuple[str, str | None, int | None]:
    """A URI for a path or URI (given as `flag`), with sha256 and size when it is a local file.

    A local path that is not UTF-8 still works: `as_uri` percent-encodes its bytes.
    """
    parsed = urlparse(location)
    if parsed.scheme and parsed.scheme != "file":
        return location, None, None
    path = Path(parsed.path if parsed.scheme else location).expanduser().resolve()
    if not path.is_file():
        shown = printable(location) or repr(location)
        raise UsageError(f"{flag} {shown}: no such file (give a path to the data, or a URI)")
    digest, size = file_digest(path)
    return path.as_uri(), digest, size


def instant(text: str) -> datetime:
    """A flag's time: ISO 8601 (UTC when it names no offset)."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO 8601, e.g. 2026-12-01T09:30:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
