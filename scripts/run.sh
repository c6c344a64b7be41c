#!/usr/bin/env bash
# Sets everything up and runs the project's main job on its built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mobilenet train "$@"
