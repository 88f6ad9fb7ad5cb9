#!/usr/bin/env bash
# AVA detection on CPU: synthetic AVA-like set -> convert-ava records -> train SlowFast and
# Slow-only detectors (configs/synthetic_ava_{slowfast,slow}.flags) -> frame-mAP@0.5 of both.
#   bash scripts/run_synthetic_ava.sh [SEED]      (SEED: synthetic set and training seed, default 0)
# Work files: $SYNTHETIC_AVA_DIR (default /tmp/slowfast_tf_synthetic_ava/seed$SEED); re-running
# reuses the set and resumes (or skips) finished trainings. Extra train.py flags: $AVA_TRAIN_FLAGS (split at
# spaces: write JSON values without spaces).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-0}"
W="${SYNTHETIC_AVA_DIR:-/tmp/slowfast_tf_synthetic_ava/seed$SEED}"
PY="${PYTHON:-python}"
# TF start-up noise is quieted by each entry point (slowfast_tf/utils/tf_startup.py): setting
# TF_CPP_MIN_LOG_LEVEL here would turn that filter off.
export KERAS_BACKEND=tensorflow
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

step "1/3 synthetic AVA set (seed $SEED, 2-3 actors per 48x64 video, 4 keyframes per video at 30 fps) -> $W/synth"
if [ ! -f "$W/synth/ava_synthetic.json" ]; then
  "$PY" -m slowfast_tf.data.ava.ava_synthetic --output_dir "$W/synth" --num_train "${AVA_NUM_TRAIN:-24}" \
    --num_val "${AVA_NUM_VAL:-8}" --seed "$SEED"
fi
for split in train val; do
  if [ ! -f "$W/tfr/${split}_ava.json" ]; then
    "$PY" -m tfrecords_tools convert-ava --annotations "$W/synth/$split.csv" \
      --boxes "$W/synth/${split}_boxes.csv" --label_map "$W/synth/label_map.pbtxt" \
      --exclusions "$W/synth/${split}_exclusions.csv" --videos "$W/synth/videos" --split "$split" \
      --output_dir "$W/tfr" --time_offset 900
  fi
done

for model in slowfast slow; do
  step "2/3 train + frame-mAP: $model (configs/synthetic_ava_$model.flags)"
  # shellcheck disable=SC2086
  "$PY" train.py --flagfile="configs/synthetic_ava_$model.flags" --model_dir="$W/$model" \
    --seed="$SEED" --train_file_pattern="$W/tfr/train-*.tfrecord" \
    --test_file_pattern="$W/tfr/val-*.tfrecord" ${AVA_TRAIN_FLAGS:-}
done

step "3/3 SlowFast vs Slow-only (val split, detector boxes, frame-mAP@0.5 over 5 classes)"
"$PY" - "$W" "$SEED" <<'PY'
import json, sys
w, seed = sys.argv[1], sys.argv[2]
res = {m: json.load(open(f"{w}/{m}/ava_eval.json")) for m in ("slowfast", "slow")}
maps = {m: r["summary"]["frame_mAP"] for m, r in res.items()}
print(f"seed {seed}: SlowFast frame-mAP {100 * maps['slowfast']:.1f}   "
      f"Slow-only frame-mAP {100 * maps['slow']:.1f}   margin {100 * (maps['slowfast'] - maps['slow']):+.1f}")
prefix = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"
for m, r in res.items():
    aps = {k[len(prefix):]: v for k, v in r["metrics"].items() if k.startswith(prefix)}
    print(f"  {m:9s}", "  ".join(f"{k}={100 * v:.0f}" for k, v in aps.items() if v is not None))
PY
