#!/usr/bin/env bash
# Set up ./.venv for FadeMem.  Usage: bash scripts/setup.sh [test]
#   (no argument)  the runtime: fademem_core + the CLI (`demo`, `plan`, `generate`, `analyze`)
#   test           the runtime plus what the test suite needs
# torch is never pinned: a torch you already have in the venv (your CUDA build) is kept.  Only
# when torch is missing does this install one: the CPU wheel when the machine holds it offline
# (these dev/CI machines do), else pip's default torch.  FADEMEM_TORCH overrides the choice.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${FADEMEM_TORCH:-}" ]; then
    "$PY" -m pip install -q "$FADEMEM_TORCH"
  elif ! command -v nvidia-smi >/dev/null 2>&1 && "$PY" -m pip install -q --no-index torch==2.13.0 >/dev/null 2>&1; then
    echo "setup: installed the offline CPU torch wheel"
  else
    "$PY" -m pip install -q torch
  fi
fi
if [ "${1:-}" = "test" ]; then
  "$PY" -m pip install -q -e ".[test,generate]"
else
  "$PY" -m pip install -q -e .
fi
echo "setup: ready ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
