#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests $( [ -d benchmarks ] && echo benchmarks )
# pytest exits 5 when it collects nothing; that is a failure here, as any non-zero code is.
# Two workers (pytest-xdist), one CPU thread each (tests/conftest.py): much of the suite is
# single-threaded (the CLI's start, image decoding, LiteRT, pycocotools), so two workers finish it
# in about two thirds of one worker's time on 2 cores.
python -m pytest -q -n 2 --dist worksteal --durations=25
