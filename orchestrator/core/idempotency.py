"""Is a request for a run that exists the same request, or a conflict?

A run id is derived from its key (`ids.run_id_for`), so a request naming a run that exists was
made with the same key. Idempotency keys work as Stripe's do: the same key with the same
request is a duplicate, answered with the run it made; the same key with a different request
is a mistake the sender must hear about, not a silent "already done" for work that was never
asked for. Either way the request is recorded as ignored in the run's log, so the decision is
replayed, not remade.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from events.intents import RunRequested
from events.runs import RunCreated
from orchestrator.core.state import RunState

DUPLICATE = "duplicate run request (run already exists)"
CONFLICT = "conflict: "
"""How the reason of an ignored conflicting request begins (`is_conflict` tells it apart)."""


FIELDS = ("spec", "params", "trigger", "priority")
"""A request's defining fields, in the order a conflict names them."""
DIGEST_BYTES = 8


def repeated_request(run_id: str, made: bytes, request: RunRequested) -> str:
    """Why a request for run `run_id`, which exists and was made by the request `made`
    digests (`made_by`), is ignored: the reason to record."""
    fields = differing(made, request)
    if not fields:
        return DUPLICATE
    return (f"{CONFLICT}{_key(request)} already made run {run_id} "
            f"with different {', '.join(fields)}")


def is_conflict(reason: str) -> bool:
    """Whether an `input_ignored` reason is a conflicting request (vs a duplicate)."""
    return reason.startswith(CONFLICT)


def made_by(run: RunState) -> bytes:
    """The request that made `run`, as a digest of each defining field: what a repeated
    request is compared with, kept also once the run has ended (`core/ended.py`)."""
    return _digests(run.spec.version(), run.params, run.trigger.model_dump(mode="json"),
                    run.priority)


def made_by_created(created: RunCreated) -> bytes:
    """`made_by` of the run `created` makes, from the event alone (core/trusted_fold.py):
    its spec's version is the one it names when the spec is not inline."""
    version = created.spec.version() if created.spec is not None else created.pipeline_version
    return _digests(version, dict(created.params), created.trigger.model_dump(mode="json"),
                    created.priority)


def differing(made: bytes, request: RunRequested) -> tuple[str, ...]:
    """The request's defining fields that differ from the request that made the run, in order.

    Defining: the spec (by content hash, so a description edit is no difference), the params,
    the trigger (for a manual run: its payload, the --uri) and the priority. Values compare as
    digests of canonical JSON, so 1 and 1.0 or true differ, as they would to the tasks (two
    different values read the same only if their 64-bit digests collide; either way the
    request is ignored, as the run exists: only which reason is recorded could differ).
    """
    asked = _digests(request.spec.version(), request.params,
                     request.trigger.model_dump(mode="json"), request.priority)
    n = DIGEST_BYTES
    return tuple(name for i, name in enumerate(FIELDS)
                 if made[i * n:(i + 1) * n] != asked[i * n:(i + 1) * n])


def _digests(version: str, params: dict[str, Any], trigger: dict[str, Any],
             priority: int) -> bytes:
    return b"".join(hashlib.blake2b(value.encode(), digest_size=DIGEST_BYTES).digest()
                    for value in (version, _canonical(params), _canonical(trigger),
                                  str(priority)))


def _canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""`json.dumps(value, sort_keys=True, separators=(",", ":"))`, without an encoder made per
call: every run's end digests its request (core/trusted_fold.py folds thousands a second)."""


def _key(request: RunRequested) -> str:
    """The key the run id was derived from, named as its sender knows it."""
    if request.idempotency_key is not None:
        return f"idempotency key {request.idempotency_key!r}"
    return f"trigger event {request.trigger.event_id!r}"
