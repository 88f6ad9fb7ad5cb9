#!/usr/bin/env bash
# Creates ./.venv with the pinned stack (TF 2.21 / Keras 3.15). Pass extras, e.g. `bash scripts/setup.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [ -n "$EXTRAS" ]; then
  python -m pip install -q -e ".[${EXTRAS}]"
else
  python -m pip install -q -e .
fi
