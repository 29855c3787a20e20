"""Which webhook sources a process takes (`--webhooks FILE`): each with its secrets (in the
file, or in an environment variable the file names: never in the log), its rate, and what it
was sent (accepted, and refused by reason), counted. A token bucket per source limits the
rate: a burst up to a minute's worth, then the rate itself."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from events.webhooks import secret_key

SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,62}$"
DEFAULT_PER_MINUTE = 600


@dataclass
class Source:
    name: str
    keys: list[bytes]
    per_minute: int = DEFAULT_PER_MINUTE
    counts: Counter[str] = field(default_factory=Counter)
    """`accepted`, `duplicate`, and each refusal's reason (`bad signature`, `rate`...)."""
    _tokens: float = -1.0
    _at: float = 0.0

    def take(self, now: float) -> float:
        """0 when a delivery may go on now, else the seconds until one may."""
        if self._tokens < 0:
            self._tokens, self._at = float(self.per_minute), now
        rate = self.per_minute / 60.0
        self._tokens = min(float(self.per_minute), self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / rate


@dataclass
class Webhooks:
    sources: dict[str, Source]
    clock: Any = time.monotonic

    @classmethod
    def load(cls, path: Path, environ: Mapping[str, str] | None = None) -> Webhooks:
        """ValueError saying what is wrong with the file (a source, a secret, a rate)."""
        env = os.environ if environ is None else environ
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None
        try:
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: not {'JSON' if path.suffix == '.json' else 'YAML'}: "
                             f"{exc}") from None
        entries = doc.get("sources") if isinstance(doc, dict) else None
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"{path}: give 'sources:' with one entry per source, each with "
                             "'secrets' (a list) or 'secrets_env' (a variable's name)")
        return cls({name: _source(path, name, body, env) for name, body in entries.items()})


def _source(path: Path, name: Any, body: Any, env: Mapping[str, str]) -> Source:
    where = f"{path}: source {name!r}"
    if not isinstance(name, str) or not re.fullmatch(SOURCE_PATTERN, name):
        raise ValueError(f"{where}: a source name is lower-case letters, digits, _ and -")
    if not isinstance(body, dict):
        raise ValueError(f"{where}: give 'secrets' or 'secrets_env'")
    secrets: Any = body.get("secrets")
    if "secrets_env" in body:
        variable = str(body["secrets_env"])
        if variable not in env:
            raise ValueError(f"{where}: the environment variable {variable} is not set")
        secrets = env[variable].split()
    if not isinstance(secrets, list) or not secrets:
        raise ValueError(f"{where}: give 'secrets' (a list: several while a key rotates) or "
                         "'secrets_env' (a variable holding them, space-separated)")
    try:
        keys = [secret_key(str(secret)) for secret in secrets]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    rate = body.get("per_minute", DEFAULT_PER_MINUTE)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        raise ValueError(f"{where}: per_minute must be a whole number above 0")
    return Source(name, keys, rate)
