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


def test_every_consumer_is_a_configuration_of_the_one_loop() -> None:
    # given the bus's consumer loop and the consumers of the bus
    from agents.commands import Commands
    from bus.loop import Loop, Tail
    from orchestrator.service.consumer import Consumer
    from orchestrator.service.group_loop import GroupLoop
    from orchestrator.store.projections import Projector
    consumers: list[type] = [GroupLoop, Consumer, Commands, Projector, Tail]
    # then each is a Loop, and only the loop itself waits for input on the bus
    assert [c.__name__ for c in consumers if not issubclass(c, Loop)] == []
    waiting = {str(path.relative_to(ROOT)) for package in ("bus", "agents", "orchestrator")
               for path in (ROOT / package).rglob("*.py")
               if "wait_for_input(" in path.read_text()}
    assert waiting == {"bus/loop.py", "bus/waiting.py"}
