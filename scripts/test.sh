#!/usr/bin/env bash
# Install (or reuse) the environment, then run the linter and the whole test suite,
# the slow end-to-end group included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
"$AXION_VENV/bin/ruff" check axion tests benchmarks
"$PY" -m pytest -q "$@"
