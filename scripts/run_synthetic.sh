#!/usr/bin/env bash
# README main job, CPU only: synthetic videos -> TFRecords -> train SlowFast and Slow-only ->
# multi-view evaluation -> SavedModel export -> classify synthetic MP4s through the serving client.
#   bash scripts/run_synthetic.sh [SEED]   (SEED: synthetic set and training seed; default $SEED or 0)
# Work files go to $SYNTHETIC_DIR (default /tmp/slowfast_tf_synthetic/seed$SEED); re-running reuses
# the videos/records and resumes (or skips) finished trainings. scripts/setup.sh runs when .venv is
# missing or older than pyproject.toml; SYNTHETIC_SKIP_SETUP=1 skips it and .venv (the
# `python` on PATH is used).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-${SEED:-0}}"
W="${SYNTHETIC_DIR:-/tmp/slowfast_tf_synthetic/seed$SEED}"
START=$(date +%s)
if [ "${SYNTHETIC_SKIP_SETUP:-0}" != 1 ]; then
  if [ ! -f .venv/.setup_done ] || [ pyproject.toml -nt .venv/.setup_done ]; then
    bash scripts/setup.sh
    touch .venv/.setup_done
  fi
  . .venv/bin/activate
fi
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow
mkdir -p "$W"
# CPU seconds (user + sys) of every command so far, from bash's `times` (its second line).
cpu_s() { awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$W/.times"; }
step() { times > "$W/.times"; echo; echo "=== [$(( $(date +%s) - START ))s wall, $(cpu_s)s CPU] $*"; }

step "1/6 synthetic videos (seed $SEED; 6 classes, 64x64, 2 s at 30 fps) -> $W/videos"
if [ ! -f "$W/videos/test.csv" ]; then
  python -m slowfast_tf.data.synthetic --output_dir "$W/videos" --num_train 40 --num_val 5 --num_test 10 \
    --seed "$SEED"
fi

step "2/6 videos -> TFRecord shards of SequenceExamples -> $W/records"
for split in train test; do
  python -m tfrecords_tools convert --input "$W/videos/$split.csv" --input_format list \
    --path_prefix "$W/videos" --classes "$W/videos/classes.txt" --output_dir "$W/records" \
    --split "$split" --short_side 0 --noprogress
done

for model in slowfast slow; do
  step "3/6 train + multi-view evaluation: $model (configs/synthetic_$model.flags)"
  python train.py --flagfile="configs/synthetic_$model.flags" --model_dir="$W/$model" \
    --seed="$SEED" --train_file_pattern="$W/records/train-*.tfrecord" \
    --test_file_pattern="$W/records/test-*.tfrecord" --class_names="$W/records/classes.txt"
done

step "4/6 SlowFast vs Slow-only (test split, 3 clips x 1 crop per video)"
python - "$W" <<'PY'
import json, sys
w = sys.argv[1]
acc = {m: json.load(open(f"{w}/{m}/eval_summary.json"))["top1"] for m in ("slowfast", "slow")}
per_class = {m: {r["class_name"]: 100 * r["accuracy"]
                 for r in json.load(open(f"{w}/{m}/eval_per_class.json"))} for m in acc}
print(f"SlowFast top-1 {acc['slowfast']:.1f}%   Slow-only top-1 {acc['slow']:.1f}%   (chance 16.7%)")
for m in ("slowfast", "slow"):
    print(f"  {m:9s}", "  ".join(f"{name}={a:.0f}%" for name, a in per_class[m].items()))
# The flicker and dart pairs differ only at the fast pathway's frame rate (see synthetic.py).
fast = ("flicker_low", "flicker_high", "dart_up", "dart_down")
sf_min = min(per_class["slowfast"][c] for c in fast)
slow_mean = sum(per_class["slow"][c] for c in fast) / len(fast)
print(f"fast-pair classes: SlowFast worst {sf_min:.0f}%, Slow-only mean {slow_mean:.0f}% "
      "(a model that cannot tell a pair apart averages ~50% on it)")
ok = acc["slowfast"] >= 90 and sf_min >= 80
print("PASS: SlowFast >= 90% top-1 and >= 80% on every fast-pair class" if ok else
      "WARNING: SlowFast missed the target (>= 90% top-1, >= 80% on every fast-pair class)")
PY

step "5/6 export SlowFast as a TF Serving SavedModel -> $W/models"
# No clip flag: model.keras carries the clip spec it was trained with (frames, rate, 36 px short
# side, 32 px crop, mean/std), and the SavedModel hands it to the client (`metadata` signature).
python export.py --model_file="$W/slowfast/model.keras" --labels_file="$W/records/classes.txt" \
  --output_dir="$W/models" --model_name=slowfast_synthetic --top_k=3

step "6/6 classify 12 test MP4s through the serving client (local gRPC PredictionService)"
python - "$W" <<'PY'
import glob, os, sys
from slowfast_tf.serving import client
from slowfast_tf.testing import local_server
w = sys.argv[1]
names = open(f"{w}/videos/classes.txt").read().split()
versions = sorted(glob.glob(f"{w}/models/slowfast_synthetic/[0-9]*"), key=lambda p: int(os.path.basename(p)))
runner = local_server.SessionRunner(versions[-1])
server, port = local_server.serve_grpc({"slowfast_synthetic": (int(os.path.basename(versions[-1])), runner)})
correct = total = 0
try:
    for line in open(f"{w}/videos/test.csv").read().splitlines()[::5]:  # 2 videos per class
        path, label = line.split()
        outputs = client.classify(os.path.join(w, "videos", path), f"127.0.0.1:{port}",
                                  model_name="slowfast_synthetic")
        predicted = outputs["top_k_labels"][0][0].decode()
        p = float(outputs["probabilities"][0].max())
        truth = names[int(label)]
        correct, total = correct + (predicted == truth), total + 1
        print(f"  {os.path.basename(path):22s} true {truth:13s} predicted {predicted:13s} "
              f"p={p:.2f}  {'ok' if predicted == truth else 'WRONG'}")
finally:
    server.stop(0)
print(f"serving: {correct}/{total} correct ({100 * correct / total:.1f}%), one clip per video "
      "(the evaluation above averages 3 clips)")
PY
times > "$W/.times"
CPU=$(cpu_s) WALL=$(( $(date +%s) - START ))
step "done: $((WALL / 60)) min $((WALL % 60)) s wall, $((CPU / 60)) min $((CPU % 60)) s CPU (user+sys of all steps)"
