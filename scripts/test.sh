#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests $( [ -d benchmarks ] && echo benchmarks )
# pytest exits 5 when it collects nothing; that is a failure here, as any non-zero code is.
python -m pytest -q
