"""The coordinator declares the example pipelines without loading their ML stack.

`baton up` imports each pipeline module to read its tasks' signatures and never runs a task:
numpy, scikit-learn (with scipy, pandas, pyarrow) and torch are imported inside the tasks
that use them, so they cost a worker, not the coordinator (issue #16: `baton up`'s main
process held ~130 MB of them at idle)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "sklearn", "scipy", "pandas", "pyarrow", "torch")


def test_importing_the_digits_pipelines_loads_none_of_the_ml_stack() -> None:
    # given a fresh interpreter
    # when it imports the digits pipelines, as `baton up` does to declare them
    code = ("import json, sys; import examples.digits.pipeline; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    # then no module of the ML stack was loaded
    assert json.loads(done.stdout) == []


def test_the_tasks_still_run_with_it() -> None:
    # given the digits task functions, imported the same way
    from examples.digits import tasks

    # when the split runs on a few rows, it loads numpy and scikit-learn itself
    rows = [[float(i % 16)] * 4 for i in range(40)]
    result = tasks.features({"X": rows, "y": [i % 2 for i in range(40)]})
    # then it splits them as before
    assert result.metadata == {"train_rows": 30, "test_rows": 10, "n_features": 4}
