#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install biostream with its dev extra.
# torch is installed first as the pinned CPU-friendly release, so that resolving the project's range does not
# pull a multi-GB CUDA build on a machine without a GPU. Set BIOSTREAM_TORCH to another spec (e.g. a CUDA build
# you installed yourself: BIOSTREAM_TORCH=skip) to change that.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BIOSTREAM_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
torch_spec="${BIOSTREAM_TORCH:-torch==2.13.0}"
if [ "$torch_spec" != "skip" ] && ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install --quiet "$torch_spec"
fi
"$py" -m pip install --quiet -e ".[dev]"
echo "biostream installed in $venv ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
