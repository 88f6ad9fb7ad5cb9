#!/usr/bin/env bash
# Creates ./.venv with the pinned stack (TF 2.21 / Keras 3.15). Pass extras, e.g. `bash scripts/setup.sh dev`.
# NVIDIA GPUs: the `gpu` extra (TensorFlow's CUDA libraries) is added when `nvidia-smi` works;
# SLOWFAST_TF_DEVICE=cpu|gpu overrides that guess (default: auto). Extras combine: `dev,gpu`.
# `bash scripts/setup.sh --print-extras [EXTRAS]` prints the extras it would install and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

# choose_extras EXTRAS: EXTRAS plus `gpu` when the device is (or is detected as) a GPU.
choose_extras() {
  local extras="$1" device="${SLOWFAST_TF_DEVICE:-auto}"
  case "$device" in
    auto)
      if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
        device=gpu
      else
        device=cpu
      fi ;;
    cpu | gpu) ;;
    *)
      echo "setup.sh: error: SLOWFAST_TF_DEVICE must be cpu, gpu or auto. Received: $device" >&2
      return 2 ;;
  esac
  if [ "$device" = gpu ] && [[ ",$extras," != *",gpu,"* ]]; then
    extras="${extras:+$extras,}gpu"
  fi
  echo "$extras"
}

if [ "${1:-}" = "--print-extras" ]; then
  choose_extras "${2:-}"
  exit 0
fi
EXTRAS="$(choose_extras "${1:-}")"
echo "setup.sh: extras: ${EXTRAS:-none} (SLOWFAST_TF_DEVICE=${SLOWFAST_TF_DEVICE:-auto})"
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
