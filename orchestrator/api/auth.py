"""Who may call: bearer tokens, each with a name and a role, kept as SHA-256 hashes in a file.

Without a tokens file the API listens on loopback only (cli/http.py refuses anything else) and
every caller is the local user, as an admin. With one, every call needs a token: 401 without
(or with an unknown one), 403 for a role that may not, and nothing is published. The token's
name is the actor a write records in the log.

    tokens:
      - {name: alice, role: operator, sha256: <hex of the token>}

`baton tokens add FILE NAME --role ROLE` makes a token, prints it once and appends its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.pipeline import RANK, Role
from orchestrator.api.problems import Problem

"""viewer reads; operator also requests and cancels runs and publishes triggers; admin also
re-drives dead letters."""
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,100}$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[TokenEntry] = Field(default_factory=list)


class TokensInvalid(ValueError):
    """`str()` says what is wrong with the file and how to fix it."""


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    request_id: str


LOCAL = "local"
"""The caller's name when no tokens are configured (loopback only)."""


class Tokens:
    def __init__(self, entries: list[TokenEntry]) -> None:
        self._by_hash = {entry.sha256: entry for entry in entries}

    @classmethod
    def load(cls, path: Path) -> Tokens:
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise TokensInvalid(f"cannot read tokens file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise TokensInvalid(f"tokens file {path} is not YAML: {exc}") from None
        try:
            parsed = TokenFile.model_validate(raw or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TokensInvalid(f"tokens file {path}: {where}: {first['msg']} (each entry "
                                "is {name, role: viewer|operator|admin, sha256}; make one with "
                                "'baton tokens add')") from None
        names = [e.name for e in parsed.tokens]
        if len(set(names)) != len(names):
            raise TokensInvalid(f"tokens file {path}: a name is used twice; each token needs "
                                "its own name (it is the actor the log records)")
        return cls(parsed.tokens)

    def holder(self, token: str) -> TokenEntry | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known, entry in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return entry
        return None


def new_token() -> tuple[str, str]:
    """A fresh token and its hash."""
    token = f"baton_{secrets.token_urlsafe(32)}"
    return token, hashlib.sha256(token.encode()).hexdigest()


def add_token(path: Path, name: str, role: Role) -> str:
    """Appends a new token's hash to the file (made private); returns the token itself."""
    existing = Tokens.load(path)._by_hash.values() if path.exists() else []
    if any(e.name == name for e in existing):
        raise TokensInvalid(f"tokens file {path} has a token named {name!r} already")
    token, digest = new_token()
    try:
        entry = TokenEntry(name=name, role=role, sha256=digest)
    except ValidationError:
        raise TokensInvalid(f"{name!r} is not a token name: use 1 to 100 letters, digits and "
                            "._@- (it is the actor the log records)") from None
    entries = [*existing, entry]
    document = {"tokens": [e.model_dump() for e in entries]}
    path.touch(mode=0o600, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


def caller_of(request: Request, tokens: Tokens | None) -> Caller:
    """Who is calling, or a 401 problem; the request id is the caller's `X-Request-Id` when it
    is a plain one, else a new one."""
    given = request.headers.get("x-request-id", "")
    request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    if tokens is None:
        return Caller(LOCAL, "admin", request_id)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not scheme and _streaming(request):
        scheme, token = "bearer", request.query_params.get("access_token", "")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("no bearer token: send 'Authorization: Bearer TOKEN' (make one with "
                            "'baton tokens add')")
    entry = tokens.holder(token.strip())
    if entry is None:
        raise _unauthorized("the bearer token is not one of this server's tokens")
    return Caller(entry.name, entry.role, request_id)


def _streaming(request: Request) -> bool:
    """A browser's EventSource cannot send an Authorization header: a stream request (GET,
    Accept: text/event-stream) may carry its token as `access_token` instead."""
    return request.method == "GET" and "text/event-stream" in request.headers.get("accept", "")


def allowed(caller: Caller, role: Role) -> None:
    """A 403 problem unless the caller's role includes `role`."""
    if RANK[caller.role] < RANK[role]:
        raise Problem(403, "forbidden", "Forbidden",
                      f"{caller.name!r} is a {caller.role}; this needs the {role} role (ask "
                      "whoever keeps the tokens file for a token with it)")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail,
                   headers={"WWW-Authenticate": 'Bearer realm="baton"'})
