"""The child side of the worker pool: everything here runs inside a worker process."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import pickle
import select
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agents import gc_policy, task_tracing
from agents import worker_wire as wire
from agents.artifacts import PICKLE_MEDIA_TYPE, ArtifactStore
from agents.outcomes import Failed, Invocation, Outcome, ProgressCallback, Succeeded
from agents.parent_death import die_with_parent
from agents.task_api import Result, TaskContext, TaskError
from events.common import ArtifactRef
from events.reports import MAX_TRACEBACK_CHARS

TRUNCATED = "…(truncated)\n"
"""Starts a traceback whose beginning (the outermost frames) was cut."""
CUT_INSIDE = "…(truncated)…"
"""Stands for the middle of one overlong frame or exception line."""
_MAX_CHUNK_CHARS = 2048
"""One frame or exception line longer than this (a huge message or repr) keeps only its start
and end, so that it cannot push the raising frame out of the bounded traceback."""
_HANG_UP = select.POLLHUP | getattr(select, "POLLRDHUP", 0)
"""What poll says of a pipe (a socket pair) whose other end was closed."""


class _InvalidTask(Exception):
    """The invocation names a function that cannot be found: retrying will not help."""


def worker_main(conn: Connection, artifact_root: str, env: dict[str, str], once: bool) -> None:
    """Entry point of a worker process; `env` is applied before any task module is imported."""
    die_with_parent()  # a second guard after pipe EOF (see agents.parent_death)
    # Ctrl-C and SIGTERM reach the whole process group (a terminal, systemd, kill -PGID); the
    # agent decides what happens to running tasks (it drains), and kills workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.update(env)
    task_tracing.start()
    gc_policy.apply(gc_policy.WORKER)
    store = KeptArtifacts(ArtifactStore(Path(artifact_root)))
    threading.Thread(target=_exit_on_hang_up, args=(conn,), daemon=True).start()
    send = _locked_sender(conn)
    send(("ready",))
    while True:
        try:
            inv = wire.invocation_of(wire.receive(conn))
        except (EOFError, OSError):
            os._exit(0)
        outcome = _execute(inv, store, _progress_reporter(send, inv))
        send(("done", inv.attempt_id, wire.outcome(outcome)))
        if once:
            return


def _exit_on_hang_up(conn: Connection) -> None:
    """The parent closed its end (it is gone, or done with us): exit at once rather than
    finish work nobody collects. Waits for the hang-up alone, never for data, so an
    invocation wakes only the main thread that reads it."""
    poller = select.poll()
    poller.register(conn.fileno(), _HANG_UP)
    while True:
        for _, events in poller.poll():
            if events & (_HANG_UP | select.POLLERR | select.POLLNVAL):
                os._exit(0)


def _locked_sender(conn: Connection) -> Callable[[object], None]:
    """Task code may report progress from its own threads; sends must not interleave."""
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock:
            wire.send(conn, message)

    return send


def _progress_reporter(send: Callable[[object], None], inv: Invocation) -> ProgressCallback:
    def report(fraction: float, message: str) -> None:
        send(("progress", inv.attempt_id, fraction, message))

    return report


class KeptArtifacts:
    """The artifact store as a worker uses it, keeping the small objects it stored or read
    lately. A chained task's input is most often its predecessor's output, stored by this
    very worker (the pool hands out the slot freed last first), and reading it back from its
    file (open, read, hash) took ~70 µs of the worker's CPU per task in a busy chain: on two
    cores, CPU the agent's loop thread then waits for. What is kept hashes to its sha256
    (hashed here when stored or read), so it is what a verified read returns; a file deleted
    or altered since goes unnoticed by this worker, whose task still gets the right input.
    Each task gets its own copy (unpickled again)."""

    MAX_OBJECT_BYTES = 64 * 1024
    MAX_OBJECTS = 32

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._kept: dict[tuple[str, int], bytes] = {}

    def get_object(self, ref: ArtifactRef) -> Any:
        data = self._kept.get((ref.sha256, ref.size))
        if data is None:
            data = self.store.get_bytes(ref)
            self._keep(ref, data)
        return pickle.loads(data)

    def put_object(self, obj: object) -> ArtifactRef:
        """As `ArtifactStore.put_object`, keeping the bytes."""
        data = pickle.dumps(obj, protocol=5)
        ref = self.store.put_bytes(data, PICKLE_MEDIA_TYPE)
        self._keep(ref, data)
        return ref

    def _keep(self, ref: ArtifactRef, data: bytes) -> None:
        if len(data) > self.MAX_OBJECT_BYTES:
            return
        key = (ref.sha256, ref.size)
        self._kept.pop(key, None)
        self._kept[key] = data
        if len(self._kept) > self.MAX_OBJECTS:
            del self._kept[next(iter(self._kept))]


def _execute(inv: Invocation, store: KeptArtifacts, report: ProgressCallback) -> Outcome:
    try:
        function = _resolve(inv.function)
    except _InvalidTask as exc:
        return _invalid(exc)
    try:
        kwargs = _arguments(function, inv, store, report)
        with task_tracing.inside(inv.context):
            value = function(**kwargs)
        return _success(value, store)
    except _InvalidTask as exc:
        return _invalid(exc)
    except BaseException as exc:
        return _failure(exc)


_RESOLVED: dict[str, Callable[..., Any]] = {}
"""Task functions found before, by path: a worker runs the same few again and again."""


def _resolve(path: str) -> Callable[..., Any]:
    function = _RESOLVED.get(path)
    if function is None:
        function = _RESOLVED[path] = _find(path)
    return function


def _find(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise _InvalidTask(f"task function {path!r}: write it as 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _InvalidTask(f"task module {module_name!r} cannot be imported: {exc!r}") from exc
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise _InvalidTask(f"task module {module_name!r} has no attribute {qualname!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _InvalidTask(f"task {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _arguments(
    function: Callable[..., Any], inv: Invocation, store: KeptArtifacts, report: ProgressCallback
) -> dict[str, Any]:
    """Binding first turns a wiring mistake into invalid_task instead of a retried TypeError."""
    kwargs = {name: store.get_object(ref) for name, ref in inv.inputs.items()}
    signature = _signature(function)
    if signature is not None and "ctx" in signature.parameters:
        kwargs["ctx"] = TaskContext(data=inv.context, report_progress=report)
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise _InvalidTask(f"task {inv.function} cannot take its inputs: {exc}") from exc
    return kwargs


@functools.lru_cache(maxsize=256)
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def _success(value: Any, store: KeptArtifacts) -> Succeeded:
    if not isinstance(value, Result):
        return Succeeded(output=store.put_object(value), metrics={}, metadata={}, duration_s=0.0)
    return Succeeded(
        output=store.put_object(value.value),
        metrics={name: _finite(name, number) for name, number in value.metrics.items()},
        metadata=dict(value.metadata),
        duration_s=0.0,
    )


def _finite(name: str, number: Any) -> float:
    """The contract refuses NaN and infinity (JSON has neither): a task reporting one fails
    here, saying which metric, instead of its success report being refused on the way."""
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} is {value}: metrics must be finite numbers (fail "
                         "the task, or leave the metric out)")
    return value


def _invalid(exc: _InvalidTask) -> Failed:
    return Failed(reason="invalid_task", message=str(exc), retryable=False)


def _failure(exc: BaseException) -> Failed:
    return Failed(
        reason="exception",
        message=str(exc) or type(exc).__name__,
        error_type=type(exc).__name__,
        traceback=bounded_traceback(exc),
        retryable=exc.retryable if isinstance(exc, TaskError) else True,
    )


def bounded_traceback(exc: BaseException) -> str:
    """The end of the formatted traceback, within what a report may carry: cut here, in the
    worker, so a runaway recursion never crosses the pipe or the bus in full. The worker's
    own frame (`_execute`, where every failure is caught) is left out: it is no clue."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    chunks = (_clip(chunk) for chunk in traceback.format_exception(type(exc), exc, tb))
    return keep_end("".join(chunks), MAX_TRACEBACK_CHARS)


def _clip(chunk: str) -> str:
    if len(chunk) <= _MAX_CHUNK_CHARS:
        return chunk
    half = (_MAX_CHUNK_CHARS - len(CUT_INSIDE)) // 2
    return chunk[:half] + CUT_INSIDE + chunk[-half:]


def keep_end(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, its end: in a traceback the innermost frame and
    the exception come last. A cut text starts at a line, after the TRUNCATED marker."""
    if len(text) <= limit:
        return text
    tail = text[len(text) - (limit - len(TRUNCATED)):]
    newline = tail.find("\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1:]
    return TRUNCATED + tail
