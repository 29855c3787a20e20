"""The core stays pure: a scan of its imports and names keeps I/O, clocks and randomness out."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parents[2] / "orchestrator" / "core"
FORBIDDEN_MODULES = {"asyncio", "aiosqlite", "sqlite3", "aiokafka", "faststream", "time",
                     "random", "uuid", "os", "socket", "subprocess", "threading",
                     "bus", "orchestrator.service", "orchestrator.store", "agents"}
CLOCK_READS = {"now", "utcnow", "today"}
"""`datetime` is allowed (schedules do wall-clock arithmetic in time zones), reading it not."""


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_io_clock_or_randomness() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in CORE.glob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN_MODULES or module in FORBIDDEN_MODULES
        or any(module.startswith(f"{f}.") for f in FORBIDDEN_MODULES)
    }
    assert offenders == set()


def test_the_core_never_asks_datetime_for_the_time() -> None:
    offenders = {
        f"{path.name}:{node.lineno}: .{node.attr}"
        for path in CORE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_READS
        and isinstance(node.value, ast.Name) and node.value.id in {"datetime", "date"}
    }
    assert offenders == set()


def test_the_scan_sees_every_core_module() -> None:
    assert {"decide.py", "evolve.py", "state.py", "placement.py"} <= {
        p.name for p in CORE.glob("*.py")}
