#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install biostream with its dev extra.
# torch is installed first as the pinned CPU-friendly release, so that resolving the project's range does not
# pull a multi-GB CUDA build on a machine without a GPU. Set BIOSTREAM_TORCH to another spec, or to "skip" when
# you installed a (CUDA) build yourself, to change that. pip's output goes to $venv/install.log.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BIOSTREAM_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
log="$venv/install.log"
install() {
    if ! "$py" -m pip install "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "bootstrap: 'pip install $*' failed; full log in $log" >&2
        exit 1
    fi
}
echo "bootstrap: installing into $venv (log: $log)"
install --upgrade pip
torch_spec="${BIOSTREAM_TORCH:-torch==2.13.0}"
if [ "$torch_spec" != "skip" ] && ! "$py" -c "import torch" 2>/dev/null; then
    install "$torch_spec"
fi
install -e ".[dev]"
echo "bootstrap: biostream installed ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
