#!/usr/bin/env bash
# README command 2: set up the environment (with the test extra) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
. .venv/bin/activate
ruff check .
python -m pytest -q "$@"
