#!/usr/bin/env bash
# Baton on a GPU machine that has Python 3.12, torch, numpy, scikit-learn, scipy, PyYAML,
# psutil, nvidia-ml-py, pytest, pytest-timeout and hypothesis, but no internet and none of
# Baton's other dependencies: those come as wheels in .whl/ (see "GPU example" in README.md).
#
#   bash scripts/gpu_check.sh --wheels   # on a development machine: fill .whl/ (below)
#   bash scripts/gpu_check.sh            # on the GPU machine, from any directory
#
# `--wheels` downloads, for CPython 3.12 on x86_64 Linux, the packages Baton and its tests
# import that such a machine lacks (WHEELS below, with their dependencies), at the versions
# installed in .venv, into .whl/ (keep it out of git: `echo /.whl/ >> .git/info/exclude`).
# A new import of a package not listed here makes the check stop at its first step.
#
# It installs the wheels into a temporary directory (nothing is installed system-wide),
# shows the GPUs (nvidia-smi, what Baton's agent detects, what torch sees), runs the tests
# marked gpu and torch (a skipped gpu test fails the check here), then runs an embedded-bus
# deployment: `baton up --pipeline examples.digits.pipeline:digits_torch`, publishes digits
# v1 and follows the run to its end. It prints the run, the train task's device and metrics,
# and the registered models. Everything is also written under $OUT (default: a temporary
# directory): check.log, gpu-tests.xml, up.log, run.json, summary.json.
#
# Settings (environment): GPU_CHECK_GPUS=1 (or none, 2xA100:40960, ...) makes the agent
# advertise that instead of what it detects — on a machine without a GPU, a simulated GPU is
# assigned but torch sees none, so train falls back to the CPU and says so;
# GPU_CHECK_RUN_TIMEOUT (seconds, default 600) bounds the wait for the run;
# GPU_CHECK_TESTS (default: tests) where to look for gpu/torch tests.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

# Imported by events/, orchestrator/, agents/, examples/ or tests/, and not on the GPU machine.
WHEELS=(pydantic pydantic_core annotated-types typing-inspection typing_extensions aiosqlite
        aiokafka async-timeout faststream fast-depends anyio idna pytest-asyncio
        jsonschema jsonschema-specifications referencing rpds-py attrs)

if [[ "${1:-}" == "--wheels" ]]; then
  [[ -x .venv/bin/python ]] || { echo "gpu_check --wheels: no .venv here (run ./dev test)"; exit 2; }
  mkdir -p .whl && rm -f .whl/*.whl  # stale versions would be installed beside new ones
  freeze=$(.venv/bin/python -m pip freeze)
  for name in "${WHEELS[@]}"; do
    pattern=$(tr '_-' '..' <<< "$name")
    pin=$(grep -iE "^${pattern}==" <<< "$freeze") || { echo "gpu_check --wheels: $name is not installed in .venv"; exit 1; }
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$pin"
  done
  ls .whl && du -sh .whl
  exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/baton-gpu-check.XXXXXX)}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1

RUN_TIMEOUT=${GPU_CHECK_RUN_TIMEOUT:-600}
PIPELINE=examples.digits.pipeline:digits_torch
HOME_DIR=$(mktemp -d /tmp/baton-gpu-home.XXXXXX)
SITE=$(mktemp -d /tmp/baton-site.XXXXXX)
UP_PID=""

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'gpu_check: FAILED: %s\n' "$*"; exit 1; }
baton() { python3 -m orchestrator.cli.main --home "$HOME_DIR" "$@"; }

stop_up() {
  # `baton up` runs in its own session: its process group holds its workers too.
  if [[ -n "$UP_PID" ]] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$UP_PID" 2>/dev/null || true
  fi
  UP_PID=""
}
trap stop_up EXIT

say "Baton's dependencies from .whl/ into $SITE"
shopt -s nullglob
wheels=(.whl/*.whl)
(( ${#wheels[@]} > 0 )) || fail "no wheels in $REPO/.whl (see README.md, 'GPU example')"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE:$REPO"
export PYTHONUNBUFFERED=1
unset BATON_HOME BATON_BUS
python3 - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "numpy", "sklearn", "pydantic", "aiosqlite", "aiokafka", "pytest_asyncio",
             "pynvml", "examples.digits.pipeline"):
    module = importlib.import_module(name)
    print(f"  {name:<26} {getattr(module, '__version__', 'ok')}")
EOF

say "nvidia-smi"
if command -v nvidia-smi >/dev/null; then nvidia-smi || true; else echo "nvidia-smi: not found"; fi

say "what Baton's agent detects, and what torch sees"
python3 - <<'EOF'
import os
import torch
from agents.capabilities import detect_capabilities, detect_gpus
print("agents.capabilities.detect_gpus():")
for gpu in detect_gpus():
    print(f"  {gpu.index}: {gpu.model} {gpu.memory_mb} MB")
print("detect_capabilities():", detect_capabilities().model_dump_json())
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) cuda available:",
      torch.cuda.is_available(), "devices:", torch.cuda.device_count(),
      "CUDA_VISIBLE_DEVICES:", os.environ.get("CUDA_VISIBLE_DEVICES"))
EOF
GPUS_DETECTED=$(python3 -c "from agents.capabilities import detect_gpus; print(len(detect_gpus()))")
up_flags=(--agents 1)
if [[ -n "${GPU_CHECK_GPUS:-}" ]]; then
  up_flags+=(--gpus "$GPU_CHECK_GPUS")
  echo "agent advertises --gpus $GPU_CHECK_GPUS (GPU_CHECK_GPUS), not what it detects"
elif [[ "$GPUS_DETECTED" == 0 ]]; then
  fail "no GPU detected (NVML, nvidia-smi); set GPU_CHECK_GPUS=1 to simulate one"
fi

say "pytest -m 'gpu or torch'"
# interop tests need confluent-kafka, which is not carried (they need a Kafka broker anyway)
python3 -m pytest -p no:cacheprovider -m "gpu or torch" -rA \
  --ignore=tests/kafka/test_interop.py --junitxml="$OUT/gpu-tests.xml" ${GPU_CHECK_TESTS:-tests}
python3 - "$OUT/gpu-tests.xml" "${GPU_CHECK_GPUS:-}" <<'EOF'
import sys
import xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
assert suite is not None
skipped = int(suite.get("skipped", 0))
print(f"tests: {suite.get('tests')} run, {skipped} skipped, {suite.get('failures')} failed, "
      f"{suite.get('errors')} errors")
if skipped and not sys.argv[2]:
    sys.exit("gpu_check: FAILED: gpu/torch tests were skipped on a GPU machine (see above)")
EOF

say "a digits_torch run: baton up --pipeline $PIPELINE ${up_flags[*]} (home $HOME_DIR)"
baton pipelines validate "$PIPELINE"
setsid python3 -m orchestrator.cli.main --home "$HOME_DIR" up --pipeline "$PIPELINE" \
  "${up_flags[@]}" > "$OUT/up.log" 2>&1 &
UP_PID=$!
DATA=$(python3 -c "
from pathlib import Path
from examples.digits.data import write_version
print(write_version(Path('$HOME_DIR/datasets'), 'v1').path)")
baton publish data-arrived --dataset digits --version v1 --uri "$DATA"

# Bounded polling of the run's recorded status: `baton runs list` reads what `baton up`
# projected from the log, so "ended" here is the log's word, not a guess from time passed.
deadline=$((SECONDS + RUN_TIMEOUT))
RUN_ID=""
while :; do
  kill -0 "$UP_PID" 2>/dev/null || { cat "$OUT/up.log"; fail "baton up exited"; }
  read -r RUN_ID STATUS < <(baton runs list --json | python3 -c "
import json, sys
rows = json.load(sys.stdin)
print(rows[0]['run_id'], rows[0]['status']) if rows else print('-', 'none')")
  case "$STATUS" in succeeded|failed|cancelled) break ;; esac
  if (( SECONDS >= deadline )); then
    [[ "$RUN_ID" != "-" ]] && baton runs show "$RUN_ID"
    cat "$OUT/up.log"
    fail "the run did not end within ${RUN_TIMEOUT}s (status: $STATUS)"
  fi
  sleep 1
done

say "the run"
baton runs show "$RUN_ID"
baton runs show "$RUN_ID" --json > "$OUT/run.json"
say "baton models"
baton models
stop_up

say "train: where it ran, and its figures"
python3 - "$OUT/run.json" "$OUT/summary.json" "${GPU_CHECK_GPUS:-}" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
tasks = {t["name"]: t for t in run["tasks"]}
train, evaluate = tasks["train"], tasks["evaluate"]
summary = {"run_id": run["run_id"], "status": run["status"], "agent": train["agent_id"],
           **train["metadata"], **train["metrics"],
           "test_accuracy": evaluate["metrics"].get("accuracy"),
           "test_f1": evaluate["metrics"].get("f1"), "models": run["models"]}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
for key, value in summary.items():
    print(f"  {key:<22} {value}")
if run["status"] != "succeeded":
    sys.exit("gpu_check: FAILED: the run did not succeed")
if not sys.argv[3] and not str(train["metadata"].get("device", "")).startswith("cuda"):
    sys.exit("gpu_check: FAILED: a GPU was detected but train did not run on it")
EOF
say "gpu_check: OK (outputs in $OUT)"
