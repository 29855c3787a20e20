"""The packages' layering: the bus is the port both sides use, so neither it nor the agents
depend on the coordinator (an agent host needs no orchestrator code to run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_purity import imported_modules

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("package", ["bus", "agents"])
def test_the_package_imports_nothing_of_the_orchestrator(package: str) -> None:
    # given every module of the package
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    # then none imports the orchestrator
    offenders = {f"{path.relative_to(ROOT)}: {module}"
                 for path in modules for module in imported_modules(path)
                 if module == "orchestrator" or module.startswith("orchestrator.")}
    assert offenders == set()
