#!/usr/bin/env bash
# Install (or reuse) the environment, then run the linter, the format check and the whole test suite,
# the slow end-to-end group included. Extra arguments go to pytest.
#
# The test files are spread over up to four processes (pytest-xdist; one per core, each file
# whole on one process so its fixtures are built once), each process with its share of the
# cores for torch. AXION_TEST_WORKERS overrides the count (0: one process, no xdist).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
"$AXION_VENV/bin/ruff" check axion tests benchmarks examples
"$AXION_VENV/bin/ruff" format --check axion tests benchmarks examples
CORES="$(nproc)"
WORKERS="${AXION_TEST_WORKERS:-$(( CORES < 4 ? CORES : 4 ))}"
if [ "$WORKERS" -le 1 ]; then
    exec "$PY" -m pytest -q "$@"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( CORES / WORKERS > 1 ? CORES / WORKERS : 1 ))}"
exec "$PY" -m pytest -q -n "$WORKERS" --dist loadfile "$@"
