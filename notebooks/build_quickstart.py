"""Writes ``notebooks/quickstart.ipynb`` from the cell sources below (the notebook's source of truth).

    python notebooks/build_quickstart.py            # rewrite the notebook
    python notebooks/build_quickstart.py --check    # exit 1 if the committed notebook is stale

Edit the cells here, not in Jupyter: the notebook is stored without outputs, and
``tests/notebooks_test.py`` checks that it equals this file's output and that it runs.
The JSON is plain nbformat 4.5, written with the ``json`` module (no ``nbformat`` needed).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

NOTEBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.ipynb")

# Each cell is ("markdown" | "code", source). Sources are dedented literal text.
CELLS: list[tuple[str, str]] = [
    ("markdown", """\
# slowfast_tf quickstart

SlowFast video networks ([Feichtenhofer et al., ICCV 2019](https://arxiv.org/abs/1812.03982)) in
TensorFlow 2 / Keras 3, end to end on a CPU in about a minute:

1. build a SlowFast preset and count its parameters and GFLOPs (no forward pass of the big model);
2. run a tiny SlowFast (R18 depth, width 8) on a clip packed into its two pathways;
3. make a tiny synthetic video dataset, convert it to TFRecords, train with `model.fit` and evaluate;
4. export a TF Serving SavedModel and classify a uint8 clip through its signature;
5. predict over a whole video with sliding windows (`python -m slowfast_tf.predict`);
6. detect actions per person box with a tiny AVA detector (`SlowFastDetector`) on a synthetic clip.

Everything is written to a temporary directory, removed in the last cell. See the project
[README](../README.md) for the command-line tools and [docs/DESIGN.md](../docs/DESIGN.md) for the
tensor conventions (channels-last `[B, T, H, W, 3]` clips, a dict of pathways as model input)."""),
    ("code", """\
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info logs

import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from slowfast_tf import models
from slowfast_tf.data import build_dataset, get_data_config, pack_pathways, slow_indices, synthetic
from slowfast_tf.data.transforms import normalize
from slowfast_tf.serving import export_for_serving, serving_config_from_model
from slowfast_tf.training import evaluate_multiview
from tfrecords_tools.convert import convert
from tfrecords_tools.encode import EncodeSettings
from tfrecords_tools.sources import read_list_file

keras.utils.set_random_seed(0)
WORK_DIR = tempfile.mkdtemp(prefix="slowfast_tf_quickstart_")
print("keras", keras.__version__, "| tensorflow", tf.__version__, "| work dir", WORK_DIR)"""),
    ("markdown", """\
## 1. Presets, parameters and GFLOPs

`models.build_model(name, num_classes=...)` builds any preset of the model zoo (SlowFast, Slow-only,
Fast-only, C2D, I3D, non-local variants and the R(2+1)D family). Names follow PySlowFast:
`slowfast_r50_8x8` is the R50 whose *slow* pathway sees 8 frames at stride 8, i.e. 32 fast frames
at stride 2 with `alpha = 4`.

`count_flops` walks the Keras graph symbolically (nothing is executed), so counting the full R50
at 224 and 256 px takes well under a second. `convention="fvcore"` matches PySlowFast's fvcore
numbers (eval-mode BatchNorm counted); `"paper"` leaves BatchNorm out and gives the paper's 65.7."""),
    ("code", """\
presets = models.list_presets()
print(f"{len(presets)} presets:", ", ".join(presets))

preset = models.get_preset("slowfast_r50_8x8")
print(f"\\n{preset.description}: frames {preset.frames}, sampling rate {preset.sampling_rate}")
r50 = models.build_model("slowfast_r50_8x8", num_classes=400)
r50_params = models.count_params(r50)
r50_gflops = {side: models.count_flops(r50, image_size=side) / 1e9 for side in (224, 256)}
paper_gflops = models.count_flops(r50, image_size=256, convention="paper") / 1e9
print(f"params: {r50_params:,}")
for side, gflops in r50_gflops.items():
    print(f"GFLOPs at {side}x{side} (fvcore): {gflops:.2f}")
print(f"GFLOPs at 256x256 (paper, BatchNorm not counted): {paper_gflops:.2f}")
del r50  # the rest of the notebook uses a tiny model"""),
    ("markdown", """\
## 2. Pathway packing and a tiny forward pass

Packing a clip into pathways is the data layer's job, never the model's: `pack_pathways` keeps all
`T` frames for the fast pathway and `linspace(0, T-1, T // alpha)` (truncated) for the slow one,
exactly as PySlowFast's `PackPathway`. This is **not** `frames[::alpha]`: the first and the last
frame are always kept.

The classifier returns logits (the mean of the per-position logits, PySlowFast's training output).
`build_eval_model()` shares the weights and also returns `probabilities` (the mean of per-position
softmaxes, PySlowFast's fully convolutional test head) and the pooled `features` (2304-d for R50:
2048 slow + 256 fast channels). At the training crop there is one head position and the two
agree; at a larger test crop (here 64 px for a model trained at 32, like 256 vs 224) they differ."""),
    ("code", """\
NUM_FRAMES, ALPHA, CROP = 16, 4, 32  # fast frames, fast/slow frame-rate ratio, training crop
print("slow indices, T=32, alpha=4:", slow_indices(32, 4))
print(f"slow indices, T={NUM_FRAMES}, alpha={ALPHA}:", slow_indices(NUM_FRAMES, ALPHA))

rng = np.random.default_rng(0)
clip = rng.integers(0, 256, size=(NUM_FRAMES, 64, 64, 3), dtype=np.uint8)  # [T, H, W, 3] RGB
packed = pack_pathways(clip, alpha=ALPHA)
for key, value in packed.items():
    print(f"{key}: {tuple(value.shape)} {value.dtype.name}")
assert np.array_equal(packed["slow"].numpy(), clip[slow_indices(NUM_FRAMES, ALPHA)])

# PySlowFast's Kinetics normalisation, (x / 255 - mean) / std, and a batch axis.
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
inputs = {key: normalize(value, MEAN, STD)[None] for key, value in packed.items()}

# R18 stages, 8 slow channels, fast width 8 / beta_inv 4 = 2; the head is sized for 32 px crops.
tiny = models.build_model(
    "slowfast_r50_8x8", num_classes=3, depth=18, width=8, beta_inv=4, fusion_kernel_size=5,
    num_frames=NUM_FRAMES, alpha=ALPHA, train_crop_size=CROP,
)
eval_model = tiny.build_eval_model()
# features: 8 x 32 = 256 slow + 2 x 32 = 64 fast res5 channels = 320 (R50: 2048 + 256 = 2304).
print(f"\\ntiny model: {models.count_params(tiny):,} params")

center = {key: value[:, :, 16:48, 16:48] for key, value in inputs.items()}  # 32 px center crop
for name, view in (("32 px (1 head position)", center), ("64 px (2x2 head positions)", inputs)):
    logits = tiny(view, training=False)
    outputs = eval_model(view, training=False)
    print(f"{name}: logits {tuple(logits.shape)}, features {tuple(outputs['features'].shape)}")
    softmax = keras.ops.convert_to_numpy(keras.ops.softmax(logits))[0]
    print("  softmax(logits)   ", np.round(softmax, 4))
    print("  eval probabilities", np.round(outputs["probabilities"].numpy()[0], 4))
    if view is center:  # one position: the mean of one softmax is the softmax of the logits
        np.testing.assert_allclose(softmax, outputs["probabilities"].numpy()[0], atol=1e-6)"""),
    ("markdown", """\
## 3. Synthetic videos -> TFRecords -> `model.fit`

`slowfast_tf.data.synthetic` renders small MP4s whose classes need motion to tell apart
(flicker rates, moving and growing shapes). `tfrecords_tools` decodes them with PyAV, resamples to
30 fps and stores one JPEG per frame in `tf.train.SequenceExample` shards; `build_dataset` samples
clips, jitters scale, crops, flips, normalises and packs pathways. For real data use the command
line (`python -m tfrecords_tools convert --input k400.csv ...`, see the README) and
`train.py --flagfile=configs/k400_slowfast_r50_8x8.flags`; `bash scripts/run_synthetic.sh`
runs the full-length version of this section.

Six training steps only show the mechanics: expect accuracy near chance (1/3) here. The script
above trains for 6 epochs of 240 videos and compares SlowFast with a Slow-only baseline."""),
    ("code", """\
CLASSES = ("flicker_low", "dart_up", "grow")
video_dir = os.path.join(WORK_DIR, "videos")
record_dir = os.path.join(WORK_DIR, "records")
# 1.2 s at 30 fps = 36 frames, enough for a 16-frame clip at sampling rate 2 (32 frames).
info = synthetic.generate(video_dir, {"train": 4, "test": 2}, size=40, seconds=1.2,
                          classes=CLASSES, progress=False)
print("videos:", info["counts"], "codec", info["codec"])

for split in ("train", "test"):
    items = read_list_file(os.path.join(video_dir, f"{split}.csv"), split, path_prefix=video_dir)
    # short_side=0 keeps the 40 px frames (Kinetics conversions use 256).
    manifest = convert(items, record_dir, EncodeSettings(short_side=0),
                       classes_file=os.path.join(video_dir, "classes.txt"), progress=False)
print("records:", {s: (v["videos"], v["shards"]) for s, v in manifest["splits"].items()},
      sorted(f for f in os.listdir(record_dir) if f.endswith(".tfrecord")))"""),
    ("code", """\
data_config = get_data_config(
    "synthetic_slowfast", num_frames=NUM_FRAMES, alpha=ALPHA, train_crop=CROP, test_crop=CROP,
    train_jitter_scales=(CROP, 40), num_clips=2, num_crops=1, num_classes=len(CLASSES),
)
train_ds = build_dataset(os.path.join(record_dir, "train-*.tfrecord"), data_config, "train",
                         batch_size=4, seed=0)
batch_inputs, batch_labels = next(iter(train_ds))
print({key: tuple(value.shape) for key, value in batch_inputs.items()},
      "labels", batch_labels.numpy())

tiny.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),  # the model outputs logits
    metrics=["accuracy"],
    jit_compile=False,  # XLA compile time would dominate a run of a few steps
)
# The train dataset repeats forever, so steps_per_epoch bounds each epoch.
history = tiny.fit(train_ds, epochs=2, steps_per_epoch=3, verbose=2)

# "test" mode yields (inputs, label, video_index), num_clips x num_crops views per video;
# evaluate_multiview averages each video's softmaxes over its views, as PySlowFast's test does.
test_ds = build_dataset(os.path.join(record_dir, "test-*.tfrecord"), data_config, "test",
                        batch_size=6)
report = evaluate_multiview(eval_model, test_ds, class_names=list(CLASSES))
eval_results = report["summary"]
print(f"test: top-1 {eval_results['top1']:.1f}% on {eval_results['num_videos']} videos x "
      f"{eval_results['views_per_video']:.0f} clips (chance {100 / len(CLASSES):.1f}%)")"""),
    ("markdown", """\
## 4. Export for TF Serving and classify a uint8 clip

`export_for_serving` writes `<base>/<name>/<version>/` with two signatures: `serving_default`
takes uint8 frames `[batch, T, H, W, 3]` of any `T`, `H`, `W` (resampled to the model's `T`,
resized, center-cropped, normalised and packed inside the graph) and `serve_examples` takes
serialized SequenceExamples. Both return `probabilities`, `top_k_ids` and `top_k_labels`. It also
writes `models.config`, batching parameters and warm-up requests for `tensorflow_model_server`;
see [slowfast_tf/serving/README.md](../slowfast_tf/serving/README.md) for Docker, the gRPC/REST
client and `export.py`. The project's serving tests also load each export with the TF1 session
loader that `tensorflow_model_server` uses (`slowfast_tf.testing.local_server.SessionRunner`)."""),
    ("code", """\
TOP_K = 2
# Serve with the clip spec the model was trained with (the data config's clip settings: frames,
# rate, 32 px short side and crop, mean/std); the SavedModel's `metadata` signature returns it.
serving_config = serving_config_from_model(tiny, clip=data_config, top_k=TOP_K)
export = export_for_serving(tiny, os.path.join(WORK_DIR, "models"), "quickstart", serving_config,
                            list(CLASSES))
print("exported version", export.version, "to", export.export_dir)
print(sorted(os.listdir(os.path.dirname(os.path.dirname(export.export_dir)))))

loaded = tf.saved_model.load(export.export_dir)
print("signatures:", list(loaded.signatures))
frames = rng.integers(0, 256, size=(1, 24, 48, 64, 3), dtype=np.uint8)  # any T, H, W
served = loaded.signatures["serving_default"](frames=tf.constant(frames))
top_k_labels = [label.decode() for label in served["top_k_labels"].numpy()[0]]
top_k_probabilities = served["probabilities"].numpy()[0][served["top_k_ids"].numpy()[0]]
for label, probability in zip(top_k_labels, top_k_probabilities):
    print(f"{label:12s} {probability:.3f}")

# serve_examples takes the TFRecord payload itself: here the first test video's SequenceExample.
record = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(f"{record_dir}/test-*.tfrecord"))))
true_label = tf.train.SequenceExample.FromString(record.numpy()).context.feature["clip/label/text"]
by_example = loaded.signatures["serve_examples"](examples=tf.reshape(record, [1]))
print("\\nSequenceExample of a", true_label.bytes_list.value[0].decode(), "video ->",
      [label.decode() for label in by_example["top_k_labels"].numpy()[0]])"""),
    ("markdown", """\
## 5. Predict on a whole video

`python -m slowfast_tf.predict my_video.mp4 --model model.keras --labels classes.txt` slides clips
of the model's length over a whole video, prints the top-k per window and for the video, and can
write JSON/CSV, per-window features, the video with the labels drawn on it and a timeline plot
(see the README). In Python, `predict.Predictor` does the same for one video. Clip settings come
from the model (its clip spec); keyword arguments override single fields, here the tiny model's
16 frames and 32 px crop."""),
    ("code", """\
from slowfast_tf import predict

clip_spec = predict.resolve_clip_spec(tiny, num_frames=NUM_FRAMES, test_crop=CROP,
                                      test_short_side=CROP)
predictor = predict.Predictor(tiny, clip_spec, batch_size=4)
video = os.path.join(video_dir, "videos", "test", "grow", "grow_0000.mp4")
prediction = predictor.predict_video(video, stride_seconds=0.5)
print(predict.format_prediction(prediction, list(CLASSES), 2))
print("features per window:", prediction.features.shape)"""),
    ("markdown", """\
## 6. AVA action detection: person boxes in, actions per box out

The paper's second task. `SlowFastDetector` (presets `slowfast_r50_ava_32x2`, ...) puts
PySlowFast's RoI head on the backbone: per-pathway temporal pooling, RoIAlign 7x7 at 1/16 scale
(res5 has stride 1 and dilation 2), spatial max pool, and a sigmoid per action (multi-label).
Boxes enter as a padded `[B, max_boxes, 4]` tensor plus a `box_mask`, so shapes stay static;
padding slots never change the outputs.

`ava_synthetic.render_video` draws actors whose actions (flicker rates, orbit directions, stripes)
are labelled per box. The clip is the `T` frames centred on the keyframe (`ava_pipeline.clip_indices`)
and `detection_signatures.preprocess` is the detector's serving preprocessing (the evaluation
path: boxes to pixels, short side to `test_size`, normalise, PackPathway, pad the boxes). The
detector below is untrained, so its actions are random: `bash scripts/run_synthetic_ava.sh`
trains SlowFast and Slow-only detectors on this data and compares their frame-mAP. To serve one,
`export.py --model_file=model.keras` writes the frames + boxes signature and
`python -m slowfast_tf.serving.client --video x.mp4 --boxes boxes.csv` prints each box's actions."""),
    ("code", """\
import dataclasses

from slowfast_tf.data.ava import ava_pipeline, ava_synthetic
from slowfast_tf.serving.detection_signatures import preprocess as preprocess_detection

ACTIONS = [ava_synthetic.ACTIONS[i] for i in sorted(ava_synthetic.ACTIONS)]  # column i = id i + 1
det_config = dataclasses.replace(ava_pipeline.AVA_DATA_PRESETS["ava_synthetic"], num_frames=8,
                                 num_classes=len(ACTIONS))  # 8 frames at rate 2, 4 box slots
detector = models.build_model(
    "slowfast_r50_ava_32x2", num_classes=len(ACTIONS), depth=18, width=4, beta_inv=4,
    fusion_kernel_size=3, num_frames=det_config.num_frames, max_boxes=det_config.max_boxes,
)
print(f"{type(detector).__name__}: {models.count_params(detector):,} params, "
      f"max_boxes {detector.max_boxes}")

video, actors = ava_synthetic.render_video(np.random.default_rng(0), num_frames=24)  # 48x64
KEYFRAME = 12
clip = video[ava_pipeline.clip_indices(KEYFRAME, det_config.num_frames,
                                       det_config.sampling_rate, len(video)).numpy()]
person_boxes = np.stack([actor["boxes"][KEYFRAME] for actor in actors])  # normalised x1,y1,x2,y2
det_inputs = preprocess_detection(clip, person_boxes, det_config)
print({key: tuple(value.shape) for key, value in det_inputs.items()})

det_outputs = detector.build_eval_model()(det_inputs, training=False)
detection_probabilities = det_outputs["probabilities"].numpy()[0, : len(person_boxes)]
for box, actor, probs in zip(person_boxes, actors, detection_probabilities):
    top = np.argsort(-probs)[:2]
    print(f"box {np.round(box, 2)}: true {[ACTIONS[i - 1] for i in actor['labels']]}, "
          f"predicted {[f'{ACTIONS[i]} {probs[i]:.2f}' for i in top]}")
assert np.all(det_outputs["probabilities"].numpy()[0, len(person_boxes):] == 0)  # padding slots"""),
    ("markdown", """\
## Next steps

- **Pretrained weights**: convert PySlowFast / PyTorchVideo / Caffe2 checkpoints with
  `python -m slowfast_tf.convert --help` (library: `slowfast_tf.convert.convert_checkpoint`);
  the project's parity tests compare converted models with the PyTorch ones. See the checkpoint
  conversion section of the [README](../README.md).
- **Training at scale**: `train.py` with the flagfiles in [configs/](../configs) (multi-GPU / TPU
  strategies, mixed precision, multi-view testing), after converting Kinetics with
  `python -m tfrecords_tools convert`.
- **Serving**: `python export.py ...` and `python -m slowfast_tf.serving.client --video x.mp4`
  (`--boxes boxes.csv` for a detector), see
  [slowfast_tf/serving/README.md](../slowfast_tf/serving/README.md).
- **AVA detection**: `python -m tfrecords_tools convert-ava`, `train.py` with an AVA preset and the
  official frame-mAP; see the AVA sections of the [README](../README.md)."""),
    ("code", """\
shutil.rmtree(WORK_DIR)  # keep it instead to look at the videos, records and SavedModel"""),
]


def _lines(source: str) -> list[str]:
    """nbformat stores a source as lines that keep their newline, except the last."""
    lines = source.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def build_notebook(cells: list[tuple[str, str]] = CELLS) -> dict:
    """Returns the notebook as an nbformat 4.5 dict with no outputs.

    Args:
        cells: list of ``(cell_type, source)``; cell_type is ``"markdown"`` or ``"code"``.
    """
    out = []
    for i, (kind, source) in enumerate(cells):
        if kind not in ("markdown", "code"):
            raise ValueError(f"cell_type must be 'markdown' or 'code'. Received: {kind!r}")
        cell = {"cell_type": kind, "id": f"cell-{i:02d}", "metadata": {}, "source": _lines(source)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {
        "cells": out,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def dumps(notebook: dict) -> str:
    """Serialises like Jupyter does (1-space indent, non-ASCII kept, trailing newline)."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = flags.FlagValues()
    flags.DEFINE_bool("check", False, "Fail if the notebook is stale.", flag_values=args)
    try:
        args([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = dumps(build_notebook())
    if args.check:
        with open(NOTEBOOK, encoding="utf-8") as f:
            stale = f.read() != text
        print(f"{NOTEBOOK} is {'STALE' if stale else 'up to date'}")
        return int(stale)
    with open(NOTEBOOK, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
