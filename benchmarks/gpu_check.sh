#!/usr/bin/env bash
# GPU readiness check, at most 10 minutes on one GPU (per-step time limits add up to 600 s):
# set-up with the gpu extra, the devices TF and torch see, the PyTorchVideo parity test, one epoch
# of the tiny synthetic training (train.py, --require_gpu), the inference benchmark and the
# training benchmark when present (TF/Keras vs PyTorch in the same process), then one table.
#
#   bash benchmarks/gpu_check.sh             # full check; fails fast if TF sees no GPU
#   bash benchmarks/gpu_check.sh --dry-run   # print the steps, run nothing
#   bash benchmarks/gpu_check.sh --quick     # tiny sizes, CPU allowed: a smoke test of this script
#
# Options: --no-setup (use $PYTHON, default `python`, instead of scripts/setup.sh + .venv).
# Work files and logs: $GPU_CHECK_DIR (default /tmp/slowfast_tf_gpu_check); the table is also
# written to $GPU_CHECK_DIR/summary.md. $GPU_CHECK_TIMEOUT_SCALE multiplies every time limit
# (default 1; 6 with --quick, for loaded CPUs). Exit status: 0 if every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0 QUICK=0 SETUP=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --no-setup) SETUP=0 ;;
    *) echo "gpu_check.sh: error: unknown argument. Received: $arg" >&2; exit 2 ;;
  esac
done
W="${GPU_CHECK_DIR:-/tmp/slowfast_tf_gpu_check}"
SCALE="${GPU_CHECK_TIMEOUT_SCALE:-$([ "$QUICK" = 1 ] && echo 6 || echo 1)}"
PY="${PYTHON:-python}"
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow
[ "$DRY" = 1 ] || mkdir -p "$W/logs"
ROWS=()
FAILED=0

# run NAME LIMIT_S SUMMARY_CMD -- COMMAND...: runs COMMAND under a time limit, logs to
# $W/logs/NAME.log, and adds a table row whose result column is SUMMARY_CMD's output.
run() {
  local name="$1" limit=$(( $2 * SCALE )) summary="$3"
  shift 4
  echo "=== $name (limit ${limit}s): $*"
  if [ "$DRY" = 1 ]; then
    ROWS+=("| $name | dry-run | - | - |")
    return 0
  fi
  local start status rc log="$W/logs/$name.log"
  start=$(date +%s)
  timeout "$limit" "$@" > "$log" 2>&1
  rc=$?
  case "$rc" in 0) status=ok ;; 124) status="TIMEOUT" ;; *) status="FAIL ($rc)" ;; esac
  [ "$rc" = 0 ] || { FAILED=1; tail -n 15 "$log"; }
  ROWS+=("| $name | $status | $(( $(date +%s) - start )) | $(bash -c "$summary" 2>/dev/null | tr '\n|' ' /' | cut -c1-150) |")
  return "$rc"
}

skip() {
  echo "=== $1: skipped ($2)"
  ROWS+=("| $1 | skipped | - | $2 |")
}

table() {
  {
    echo
    echo "| step | status | seconds | result |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ "$DRY" = 0 ]; then
      for log in bench_inference bench_train; do
        if [ -f "$W/logs/$log.log" ] && grep -q '^| ' "$W/logs/$log.log"; then
          echo
          echo "$log:"
          grep '^| ' "$W/logs/$log.log"
        fi
      done
    fi
  } | tee "$([ "$DRY" = 1 ] && echo /dev/null || echo "$W/summary.md")"
}

if [ "$SETUP" = 1 ]; then
  # The gpu extra unless SLOWFAST_TF_DEVICE says otherwise (setup.sh would pick it only when
  # nvidia-smi works; here the GPU is the point).
  run setup 210 "grep -i 'extras' '$W/logs/setup.log' | tail -n 1" -- \
    env SLOWFAST_TF_DEVICE="${SLOWFAST_TF_DEVICE:-gpu}" bash scripts/setup.sh dev
  PY=.venv/bin/python
fi

REQUIRE_GPU=$([ "$QUICK" = 1 ] && echo False || echo True)
run devices 30 "grep -E '^(gpu_check|torch)' '$W/logs/devices.log'" -- "$PY" -c "
from slowfast_tf.training import devices, strategy
s = strategy.build_strategy('auto', require_gpu=$REQUIRE_GPU)
devices.log_run_context('gpu_check', s, to_stdout=True,
                        precision=strategy.set_precision_policy('auto', s))
import torch
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
" || { [ "$DRY" = 1 ] || [ "$QUICK" = 1 ] || { echo "gpu_check.sh: no GPU: stopping."; table; exit 1; }; }

# TF32 (TF's default on Ampere+) rounds conv inputs to 10 mantissa bits; the parity test checks
# the port at float32, so it runs with TF32 off.
if [ "$QUICK" = 1 ]; then PARITY=(-k "narrow_slowfast_r50_8x8"); else PARITY=(-m "not large"); fi
run parity 75 "tail -n 1 '$W/logs/parity.log'" -- \
  env NVIDIA_TF32_OVERRIDE=0 "$PY" -m pytest -q -p no:cacheprovider \
  slowfast_tf/convert/parity_test.py "${PARITY[@]}"

if [ "$QUICK" = 1 ]; then PER_CLASS=(--num_train 2 --num_val 0 --num_test 1); else PER_CLASS=(--num_train 40 --num_val 0 --num_test 10); fi
run data 45 "$PY -c 'import json; s = json.load(open(\"$W/records/manifest.json\"))[\"splits\"]; print(\"videos\", {k: v[\"videos\"] for k, v in s.items()})'" -- bash -c "
set -e
rm -rf '$W/videos' '$W/records'
'$PY' -m slowfast_tf.data.synthetic --output_dir '$W/videos' ${PER_CLASS[*]}
for split in train test; do
  '$PY' -m tfrecords_tools convert --input '$W/videos/'\$split.csv --input_format list \
    --path_prefix '$W/videos' --classes '$W/videos/classes.txt' --output_dir '$W/records' \
    --split \$split --short_side 0 --noprogress
done"

if [ "$QUICK" = 1 ]; then
  TRAIN=(--num_train_examples=8 --batch_size=4 --eval_num_batches=1 --nojit_compile)
else
  TRAIN=(--require_gpu)
fi
run train_1_epoch 90 "$PY -c 'import json; print(\"top1\", json.load(open(\"$W/train/eval_summary.json\"))[\"top1\"])'; grep -o 'train.py: devices.*' '$W/logs/train_1_epoch.log' | sed 's/.*; strategy/strategy/'" -- \
  bash -c "rm -rf '$W/train' && exec '$PY' train.py --flagfile=configs/synthetic_slowfast.flags \
    --model_dir='$W/train' --epochs=1 --train_file_pattern='$W/records/train-*.tfrecord' \
    --test_file_pattern='$W/records/test-*.tfrecord' ${TRAIN[*]}"

if [ "$QUICK" = 1 ]; then BENCH=(--quick); else BENCH=(--batch_sizes=1,8 --iters=10 --warmup=3); fi
run bench_inference 90 "grep -E '^\| slowfast' '$W/logs/bench_inference.log' | awk -F'|' '{gsub(/ /, \"\"); printf \"%s b%s: %sx; \", \$2, \$3, \$8}'" -- \
  "$PY" benchmarks/bench_inference.py "${BENCH[@]}"

if [ -f benchmarks/bench_train.py ]; then
  run bench_train 60 "grep -E '^\| ' '$W/logs/bench_train.log' | tail -n 1" -- \
    "$PY" benchmarks/bench_train.py $([ "$QUICK" = 1 ] && echo --quick)
else
  skip bench_train "benchmarks/bench_train.py is not in this checkout"
fi

table
exit "$FAILED"
