"""Deterministic identifiers: the same inputs always name the same run and attempt."""

import hashlib
from typing import Literal, get_args

Origin = Literal["trigger", "schedule", "backfill", "idempotency_key"]
"""What kind of key a run id is derived from: a trigger event's id, a schedule slot, a backfill
slot, or a manual request's idempotency key. Each kind is its own namespace, so a trigger whose
event id happens to equal a manual run's idempotency key never lands on that run. Fixed before
schedules and backfills exist, so their ids never collide with anything already logged."""
ORIGINS: tuple[Origin, ...] = get_args(Origin)


def run_id_for(pipeline: str, origin: Origin, key: str) -> str:
    """Run id = hash(pipeline, kind of origin, key).

    Each field is length-prefixed before hashing, so no choice of pipeline name or key (NULs,
    separators, anything) can make two different triples hash the same bytes.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown kind of run origin {origin!r}; one of {', '.join(ORIGINS)}")
    framed = b"".join(_framed(field) for field in (pipeline, origin, key))
    return f"run-{hashlib.sha256(framed).hexdigest()[:20]}"


def _framed(field: str) -> bytes:
    raw = field.encode()
    return len(raw).to_bytes(8, "big") + raw


def attempt_id(run_id: str, task: str, attempt: int) -> str:
    return f"{run_id}/{task}/{attempt}"
