#!/usr/bin/env bash
# README main job, CPU only: synthetic videos -> TFRecords -> train SlowFast and Slow-only ->
# multi-view evaluation -> SavedModel export -> predict one synthetic MP4 through the serving client.
# Work files go to $SYNTHETIC_DIR (default /tmp/slowfast_tf_synthetic); re-running reuses the
# videos/records and resumes (or skips) finished trainings.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${SYNTHETIC_DIR:-/tmp/slowfast_tf_synthetic}"
bash scripts/setup.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

step "1/6 synthetic videos (6 classes, 64x64, 2 s at 30 fps) -> $W/videos"
if [ ! -f "$W/videos/test.csv" ]; then
  python -m slowfast_tf.data.synthetic --output_dir "$W/videos" --num_train 40 --num_val 5 --num_test 10
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
    --train_file_pattern="$W/records/train-*.tfrecord" \
    --test_file_pattern="$W/records/test-*.tfrecord" --class_names="$W/records/classes.txt"
done

step "4/6 SlowFast vs Slow-only (test split, 3 clips x 1 crop per video)"
python - "$W" <<'PY'
import json, sys
w = sys.argv[1]
acc = {m: json.load(open(f"{w}/{m}/eval_summary.json"))["top1"] for m in ("slowfast", "slow")}
print(f"SlowFast top-1 {acc['slowfast']:.1f}%   Slow-only top-1 {acc['slow']:.1f}%   (chance 16.7%)")
print("SlowFast beats Slow-only" if acc["slowfast"] > acc["slow"] else
      "WARNING: SlowFast did not beat Slow-only on this run")
for m in ("slowfast", "slow"):
    rows = json.load(open(f"{w}/{m}/eval_per_class.json"))
    print(f"  {m:9s}", "  ".join(f"{r['class_name']}={100 * r['accuracy']:.0f}%" for r in rows))
PY

step "5/6 export SlowFast as a TF Serving SavedModel -> $W/models"
# No clip flag: model.keras carries the clip spec it was trained with (frames, rate, 36 px short
# side, 32 px crop, mean/std), and the SavedModel hands it to the client (`metadata` signature).
python export.py --model_file="$W/slowfast/model.keras" --labels_file="$W/records/classes.txt" \
  --output_dir="$W/models" --model_name=slowfast_synthetic --top_k=3

step "6/6 predict one synthetic MP4 through the serving client (local gRPC PredictionService)"
python - "$W" <<'PY'
import glob, os, sys
from slowfast_tf.serving import client
from slowfast_tf.testing import local_server
w = sys.argv[1]
versions = sorted(glob.glob(f"{w}/models/slowfast_synthetic/[0-9]*"), key=lambda p: int(os.path.basename(p)))
runner = local_server.SessionRunner(versions[-1])
server, port = local_server.serve_grpc({"slowfast_synthetic": (int(os.path.basename(versions[-1])), runner)})
try:
    for line in open(f"{w}/videos/test.csv").read().splitlines()[::10][:3]:
        path, label = line.split()
        outputs = client.classify(os.path.join(w, "videos", path), f"127.0.0.1:{port}",
                                  model_name="slowfast_synthetic")
        print(f"{path} (true class {label}):")
        print(client.format_top_k(outputs))
finally:
    server.stop(0)
PY
step "done"
