#!/usr/bin/env bash
# Set up ./.venv for FadeMem.  Usage: bash scripts/setup.sh [test]
#   (no argument)  the runtime: fademem_core + the CLI (`demo`, `plan`, `generate`, `analyze`)
#   test           the runtime plus what the test suite and `generate` need
# torch is never pinned: a torch you already have in the venv (your CUDA build) is kept.  Only
# when torch is missing does this install one: on a machine without an NVIDIA GPU the CPU wheel
# (torch 2.13.0+cpu, which these dev/CI machines hold offline; its small dependencies come from
# PyPI), else pip's default torch.  FADEMEM_TORCH overrides the choice (a pip requirement).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# pip's notes about unused local index folders are noise here
quiet() { "$@" 2> >(grep -v "^WARNING: Location .* is ignored" >&2); }
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${FADEMEM_TORCH:-}" ]; then
    quiet "$PY" -m pip install -q "$FADEMEM_TORCH"
  elif ! command -v nvidia-smi >/dev/null 2>&1 \
      && quiet "$PY" -m pip install -q "torch==2.13.0+cpu" >/dev/null 2>&1; then
    echo "setup: installed the CPU torch wheel (torch 2.13.0+cpu)"
  else
    quiet "$PY" -m pip install -q torch
  fi
fi
if [ "${1:-}" = "test" ]; then
  quiet "$PY" -m pip install -q -e ".[test,generate]"
else
  quiet "$PY" -m pip install -q -e .
fi
echo "setup: ready ($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null))"
