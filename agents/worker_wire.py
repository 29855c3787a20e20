"""What crosses a worker's pipe, as tuples of builtins: both sides import it.

Every chained task crosses the pipe twice, and on the agent's side both crossings are work on
its event loop's thread. An `Invocation` pickled whole carries its dataclasses and the
pydantic `ArtifactRef`s of its inputs, whose pickling and unpickling go through their
`__reduce__`/`__setstate__` (an outcome likewise); multiprocessing's `Connection.send` also
copies the whole copyreg dispatch table for each message. A tuple of strings and numbers,
pickled by `pickle.dumps` and rebuilt (and validated) on the other side, costs a quarter of
that (measured: dumping an invocation 6.7 -> 2.3 µs, loading one 7.0 -> 3.5 µs, loading an
outcome 4.1 -> 2.4 µs, on a warm cache; about twice that in the chain).
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import Connection
from typing import Any

from agents.outcomes import Failed, Invocation, Outcome, Succeeded
from agents.task_api import ContextData
from events.common import ArtifactRef

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def send(conn: Connection, message: object) -> None:
    """`conn.send` without multiprocessing's reducer (nothing here needs one): the bytes
    are the same, `Connection.recv` reads them."""
    conn.send_bytes(pickle.dumps(message, _PROTOCOL))


def receive(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def invocation(inv: Invocation) -> tuple[Any, ...]:
    """What a worker needs of an invocation (its timeout, GPUs and env stay with the pool)."""
    c = inv.context
    inputs = tuple((name, ref.uri, ref.sha256, ref.size, ref.media_type)
                   for name, ref in inv.inputs.items())
    return (inv.attempt_id, inv.function, inputs,
            (c.run_id, c.pipeline, c.task, c.attempt, c.attempt_id, c.trigger, c.params, c.gpus))


def invocation_of(wire: tuple[Any, ...]) -> Invocation:
    attempt_id, function, inputs, context = wire
    refs = {name: ArtifactRef(uri=uri, sha256=sha256, size=size, media_type=media_type)
            for name, uri, sha256, size, media_type in inputs}
    return Invocation(attempt_id=attempt_id, function=function, inputs=refs,
                      context=ContextData(*context))


def outcome(out: Outcome) -> tuple[Any, ...]:
    if isinstance(out, Succeeded):
        ref = out.output
        return ("succeeded", ref.uri, ref.sha256, ref.size, ref.media_type, out.metrics,
                out.metadata)
    return ("failed", out.reason, out.message, out.error_type, out.traceback, out.retryable)


def outcome_of(wire: tuple[Any, ...]) -> Outcome:
    """Its duration is the pool's to fill in (it times the whole round trip)."""
    if wire[0] == "succeeded":
        _, uri, sha256, size, media_type, metrics, metadata = wire
        output = ArtifactRef(uri=uri, sha256=sha256, size=size, media_type=media_type)
        return Succeeded(output, metrics, metadata, 0.0)
    _, reason, message, error_type, traceback, retryable = wire
    return Failed(reason, message, error_type, traceback, retryable)
