"""Pipelines that `baton pipelines validate` must refuse, each for one reason."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.pipelines import Pipeline


def ping(pong: str) -> str:
    return pong


def pong(ping: str) -> str:
    return ping


def _local_task() -> Callable[[], str]:
    def inner() -> str:  # a closure: worker processes can never import it by name
        return "unreachable"

    return inner


cyclic = Pipeline("cyclic")
cyclic.task()(ping)
cyclic.task()(pong)

unimportable = Pipeline("unimportable")
unimportable.task(name="ghost")(_local_task())
