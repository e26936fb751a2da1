#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install axion into it.
#
# Every pip call goes through constraints.txt, which pins the torch/torchvision
# pair. The install is skipped when the environment already matches
# constraints.txt and pyproject.toml (a stamp file records their hash).
#
# Usage: source scripts/venv.sh   (sets PY and AXION_VENV)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AXION_VENV="${AXION_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$AXION_VENV/.axion-install-stamp"
WANT="$(cat "$ROOT/constraints.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$AXION_VENV/bin/python" ]; then
    echo "==> creating virtual environment in $AXION_VENV"
    "$PYTHON" -m venv "$AXION_VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "==> installing axion and its dependencies (first time: a few minutes, about 7 GB)"
    if ! "$AXION_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c "$ROOT/constraints.txt" -e "$ROOT[test]" >"$AXION_VENV/install.log" 2>&1; then
        grep -v "^WARNING: Location" "$AXION_VENV/install.log" | tail -n 30 >&2
        echo "error: installing axion failed (full log: $AXION_VENV/install.log)" >&2
        exit 1
    fi
    # A broken torch/torchvision pair fails here, loudly, rather than in a test.
    "$AXION_VENV/bin/python" -c "import torch, torchvision; torchvision.ops.nms" \
        || { echo "error: torch/torchvision do not import together; see constraints.txt" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi
export LIGHTLY_DID_VERSION_CHECK=True
PY="$AXION_VENV/bin/python"
export PY AXION_VENV
