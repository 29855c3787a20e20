"""A command pays only for its own imports (issue #12, point 4): `baton publish` from a fresh
process must not load numpy, FastStream, scikit-learn, aiokafka or the embedded app."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from orchestrator.cli.commands import COMMANDS, Subcommand

HEAVY = ("numpy", "faststream", "sklearn", "aiokafka", "orchestrator.service.embedded_app")

PROBE = f"""
import atexit, json, sys
loaded = lambda: [m for m in {HEAVY!r} if m in sys.modules]
atexit.register(lambda: sys.__stderr__.write(json.dumps(loaded())))
from orchestrator.cli.main import build_parser
build_parser().parse_args(["publish", "data-arrived", "--help"])
"""


def test_parsing_publish_in_a_fresh_process_loads_none_of_the_heavy_modules() -> None:
    # given / when: a fresh interpreter builds the CLI and parses `baton publish --help`,
    # saying at exit which heavy modules it loaded
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=False, timeout=60)
    # then it printed the help and loaded none of them
    assert done.returncode == 0, done.stderr
    assert "--dataset" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_subcommand_names_a_function_that_exists(command: Subcommand) -> None:
    module, _, function = command.defined_in.partition(":")
    assert callable(getattr(importlib.import_module(f"orchestrator.cli.{module}"), function))
