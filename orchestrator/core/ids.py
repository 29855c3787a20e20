"""Deterministic identifiers: the same inputs always name the same run and attempt."""

import hashlib


def run_id_for(pipeline: str, key: str) -> str:
    """Run id = hash(pipeline, trigger event id | schedule slot | idempotency key)."""
    digest = hashlib.sha256(f"{pipeline}\x00{key}".encode()).hexdigest()
    return f"run-{digest[:20]}"


def attempt_id(run_id: str, task: str, attempt: int) -> str:
    return f"{run_id}/{task}/{attempt}"
