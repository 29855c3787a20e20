"""Every payload type the contract knows, and how to read old versions of each."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from events import (
    agents,
    backfills,
    canary,
    commands,
    conditions,
    intents,
    registry,
    reports,
    runs,
    schedules,
    serving,
    triggers,
)
from events.payloads import Payload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _payload_classes(modules: Iterable[object]) -> list[type[Payload]]:
    found: list[type[Payload]] = []
    for module in modules:
        for value in vars(module).values():
            own = getattr(value, "__module__", None) == getattr(module, "__name__", None)
            if isinstance(value, type) and issubclass(value, Payload) and value.TYPE and own:
                found.append(value)
    return found


@dataclass
class Catalog:
    """Type name -> payload class, plus upcasters that lift version n data to n + 1.

    Readers ship before writers: a reader knows every version up to its own and upcasts
    older ones on read; a newer version is an error, never a guess.
    """

    types: dict[str, type[Payload]] = field(default_factory=dict)
    upcasters: dict[tuple[str, int], Upcaster] = field(default_factory=dict)

    def add(self, cls: type[Payload]) -> None:
        if cls.TYPE in self.types and self.types[cls.TYPE] is not cls:
            raise ValueError(f"event type {cls.TYPE!r} registered twice")
        self.types[cls.TYPE] = cls

    def add_upcaster(self, type_: str, from_version: int, fn: Upcaster) -> None:
        self.upcasters[(type_, from_version)] = fn

    def upcast(self, type_: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        target = self.types[type_].VERSION
        while version < target:
            data = self.upcasters[(type_, version)](data)
            version += 1
        return data

    def can_read(self, type_: str, version: int) -> bool:
        cls = self.types.get(type_)
        if cls is None or version > cls.VERSION or version < 1:
            return False
        return all((type_, v) in self.upcasters for v in range(version, cls.VERSION))


def default_catalog() -> Catalog:
    catalog = Catalog()
    wire_modules = (triggers, intents, reports, runs, agents, commands, registry, serving,
                    canary, schedules, backfills, conditions)
    for cls in _payload_classes(wire_modules):
        if cls.TYPE not in {"trigger_info", "gate_check", "lineage", "backfill_item"}:
            catalog.add(cls)
    return catalog


CATALOG = default_catalog()
