r"""Classify your own videos: top-k per sliding window and per video, features, overlays, timeline.

    python -m slowfast_tf.predict my_video.mp4 --model model.keras --labels classes.txt
    python -m slowfast_tf.predict videos/ --preset slowfast_r50_8x8 --weights k400.weights.h5 \
        --labels k400_labels.txt --output_json preds.json --output_csv preds.csv \
        --features feats.npy --visualize out.mp4 --timeline timeline.png

Clips slide over the whole video: every `--stride_seconds` a window of the model's clip length
(``num_frames * sampling_rate / target_fps`` seconds, 2.13 s for SlowFast 8x8) is cut, plus one
window ending at the last frame so the end of the video is covered. Each window goes through the
single-crop test view the model was evaluated with (the serving preprocessing: short side, centre
crop, normalisation, pathway packing); windows run through the model in batches of
`--batch_size`. Printed: the top-k of every window with its time span, then the video's top-k
(mean of the window probabilities).

Clip settings come from the model: the `ClipSpec` in a ``.keras`` file, the ``X.clip_spec.json``
sidecar of ``X.weights.h5`` (`--preset`), or the preset's named spec; `--num_frames`, `--sampling_rate`,
`--target_fps`, `--test_crop`, `--test_short_side` override single fields. Videos are decoded by
`slowfast_tf.video_io` (the decoder and resize rule of the training records).

A directory input is processed video by video (sorted, recursively). `--output_json` and
`--output_csv` then hold every video; the per-video files (`--features`, `--visualize`,
`--timeline`) get the video's relative path inserted: ``feats.npy`` -> ``feats.clips_a.npy``.
An unreadable video or a bad argument is a one-line ``error: ...`` and exit status 2 (the other
videos of a directory are still processed).

Detection models (the ``ava_*`` presets) take person boxes instead of windows: ``--boxes`` is a
CSV of ``sec,x1,y1,x2,y2`` rows (the serving client's format) and every keyframe in it gets the
top-k actions of each box; see `slowfast_tf.predict_detection`. For a directory of videos,
``--boxes`` is a directory holding ``<video path relative to VIDEO_OR_DIR, extension .csv>``
(pass the videos directory itself when each CSV sits next to its video).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence

if __name__ == "__main__":  # Before TF is imported: no duplicated start-up/cuInit noise.
    from slowfast_tf.utils import tf_startup

    tf_startup.prefer_onednn()  # Before TF is imported: oneDNN CPU kernels (see tf_startup).
    tf_startup.quiet_tf_startup()

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from slowfast_tf import video_io, visualize  # noqa: E402
from slowfast_tf.clip_spec import ClipSpec, get_clip_spec, load_sidecar  # noqa: E402
from slowfast_tf.clip_spec import from_model as clip_spec_from_model  # noqa: E402
from slowfast_tf.utils import fileio  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
CLIP_FLAGS = ("num_frames", "sampling_rate", "target_fps", "test_crop", "test_short_side")


class PredictError(ValueError):
    """A bad argument or an unreadable input: printed as one ``error:`` line, exit status 2."""


# === Windows ===


def window_starts(num_video_frames: int, window: int, stride: int) -> list[int]:
    """First frames of the sliding windows: ``0, stride, 2 * stride, ...`` while the window fits,
    plus one window ending at the last frame (when the strides do not end there). A video shorter
    than one window gives the single window 0 (its last frame repeats to fill the clip)."""
    if window < 1 or stride < 1 or num_video_frames < 1:
        raise ValueError(
            "window_starts needs window, stride, num_video_frames >= 1. Received: "
            f"num_video_frames={num_video_frames}, window={window}, stride={stride}"
        )
    last = max(0, num_video_frames - window)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


@dataclasses.dataclass
class VideoPrediction:
    """Everything `Predictor.predict_video` computed for one video.

    ``starts`` / ``ends`` are the windows' time spans in seconds (``ends`` clipped to the video),
    ``probabilities`` is float32 ``[windows, classes]``, ``features`` float32 ``[windows, D]``
    (the pooled pre-projection vector: 2304-d for SlowFast R50).
    """

    path: str
    fps: float
    num_frames: int
    starts: np.ndarray
    ends: np.ndarray
    probabilities: np.ndarray
    features: np.ndarray

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def centers(self) -> np.ndarray:
        return (self.starts + self.ends) / 2

    @property
    def video_probabilities(self) -> np.ndarray:
        """Mean of the window probabilities (the whole-video prediction)."""
        return self.probabilities.mean(axis=0)


def top_k(probabilities: np.ndarray, k: int, labels: Sequence[str]) -> list[dict]:
    """``[{"rank", "id", "label", "probability"}]`` of the `k` largest entries (ties: lower id)."""
    order = visualize.ranking(probabilities, k)
    return [{"rank": r + 1, "id": int(i), "label": labels[i], "probability": float(probabilities[i])}
            for r, i in enumerate(order)]


# === Model and clip spec ===


def load_model(model_path=None, preset=None, weights=None, num_classes=None, overrides=None):
    """The model (classifier or detector) of ``--model`` (a ``.keras`` file) or ``--preset``
    (+ ``--weights``)."""
    import keras

    from slowfast_tf import models

    if bool(model_path) == bool(preset):
        raise PredictError("pass exactly one of --model (a .keras file) or --preset")
    if model_path:
        if weights or overrides:
            raise PredictError("--weights and --model_overrides go with --preset, not --model")
        if not model_path.endswith(".keras") or not os.path.isfile(model_path):
            raise PredictError(f"--model must be an existing .keras file. Received: {model_path}")
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad --model file
            raise PredictError(f"cannot load --model {model_path}: {_one_line(e)}") from e
    else:
        if preset not in models.PRESETS:
            raise PredictError(f"unknown --preset {preset!r}; one of {models.list_presets()}")
        if weights and not os.path.isfile(weights):
            raise PredictError(f"--weights does not exist. Received: {weights}")
        try:
            model = models.build_model(preset, num_classes=num_classes, **(overrides or {}))
        except (TypeError, ValueError) as e:
            raise PredictError(f"cannot build --preset {preset}: {_one_line(e)}") from e
        if not weights:
            print(f"warning: no --weights: {preset} has random weights", file=sys.stderr)
        else:
            try:
                model.load_weights(weights)
            except Exception as e:  # noqa: BLE001 - wrong file, wrong shapes: one line
                raise PredictError(f"cannot load --weights {weights}: {_one_line(e)}") from e
    return model


def resolve_clip_spec(model, preset=None, weights=None, name=None, **overrides) -> ClipSpec:
    """The model's clip spec (``.keras`` config, weights sidecar, or preset), then `overrides`.

    Order: `name` (``--clip_spec``) if given; else the ``.clip_spec.json`` sidecar of `weights`
    (converted or trained weights know their clip; a model built from a preset carries only the
    preset's); else the spec the model carries; else the preset's (``--preset`` or the model's
    name).
    """
    from slowfast_tf import models

    try:
        spec = get_clip_spec(name) if name else None
        if spec is None and weights:
            spec = load_sidecar(weights)
        if spec is None:
            spec = clip_spec_from_model(model)
        preset = preset or model.name
        if spec is None and preset in models.PRESETS:
            spec = models.get_preset(preset).get_clip_spec()
        if spec is None:
            raise PredictError(
                f"model {model.name!r} carries no clip spec; pass --clip_spec (a name in "
                "slowfast_tf.clip_spec.CLIP_SPECS)"
            )
        spec = spec.override(**overrides)
    except ValueError as e:
        raise PredictError(_one_line(e)) from e
    frames = dict(model.backbone.input_frames)
    if spec.frames_per_pathway() != frames:
        raise PredictError(
            f"the clip spec gives {spec.frames_per_pathway()} frames but the model takes {frames}; "
            "fix --num_frames (and the model's clip spec)"
        )
    return spec


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# === Prediction ===


class Predictor:
    """Runs a classifier over sliding windows of videos.

    Args:
        model: a video classifier (``build_eval_model()`` gives probabilities and features).
        spec: its `ClipSpec`.
        batch_size: int, windows per model call.
    """

    def __init__(self, model, spec: ClipSpec, batch_size: int = 8):
        import tensorflow as tf

        from slowfast_tf.serving import preprocessing

        self.spec, self.batch_size = spec, batch_size
        self.eval_model = model.build_eval_model()
        self.window = spec.num_frames * spec.sampling_rate  # frames at spec.target_fps
        # The clip's frames within a window: the serving path's linspace (PySlowFast's test view).
        self.offsets = preprocessing.temporal_subsample(
            tf.range(self.window), spec.num_frames
        ).numpy()
        self._preprocess = tf.function(
            lambda clip: preprocessing.preprocess_frames(clip, spec),
            input_signature=[tf.TensorSpec([spec.num_frames, None, None, 3], tf.uint8)],
        )

    def predict_video(self, path: str, stride_seconds: float, progress: bool = False
                      ) -> VideoPrediction:
        """Decodes `path` once (streaming: only one window of frames is held) and predicts."""
        from tqdm import tqdm

        spec = self.spec
        stride = max(1, int(round(stride_seconds * spec.target_fps)))
        info = video_io.probe(path)
        expected = max(1, int(round(info.duration * spec.target_fps)))
        bar = tqdm(total=len(window_starts(expected, self.window, stride)), unit="window",
                   desc=os.path.basename(path)[:30], leave=False, disable=not progress)
        held = deque(maxlen=self.window)  # the last `window` frames (av.VideoFrame)
        starts, clips, results = [], [], []
        count = 0
        for item in video_io.iter_frames(path, target_fps=spec.target_fps,
                                         short_side=spec.short_side):
            held.append(item.frame)
            count = item.index + 1
            start = count - self.window
            if start >= 0 and start % stride == 0:
                starts.append(start)
                clips.append(self._clip(held))
                self._flush(clips, results, bar)
        final = window_starts(count, self.window, stride)[-1]
        if not starts or starts[-1] != final:
            starts.append(final)
            clips.append(self._clip(held, final - (count - len(held))))
        self._flush(clips, results, bar, force=True)
        bar.close()
        starts = np.asarray(starts, np.float64)
        probabilities = np.concatenate([r["probabilities"] for r in results])
        features = np.concatenate([r["features"] for r in results])
        fps = spec.target_fps
        return VideoPrediction(
            path, fps, count, starts / fps, np.minimum(starts + self.window, count) / fps,
            probabilities.astype(np.float32), features.astype(np.float32),
        )

    def _clip(self, held: deque, first: int = 0) -> np.ndarray:
        """uint8 ``[num_frames, H, W, 3]`` of the window starting at ``held[first]`` (a short
        video repeats its last frame)."""
        index = np.minimum(first + self.offsets, len(held) - 1)
        return np.stack([held[i].to_ndarray(format="rgb24") for i in index])

    def _flush(self, clips: list, results: list, bar, force: bool = False) -> None:
        if clips and (force or len(clips) >= self.batch_size):
            results.append(self._run(clips))
            bar.update(len(clips))
            clips.clear()

    def _run(self, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [self._preprocess(clip) for clip in clips]
        batch = {key: np.stack([x[key].numpy() for x in inputs]) for key in inputs[0]}
        out = self.eval_model.predict_on_batch(batch)
        return {"probabilities": np.asarray(out["probabilities"]),
                "features": np.asarray(out["features"])}


# === Outputs ===


def top_k_text(probabilities: np.ndarray, k: int, labels: Sequence[str]) -> str:
    """``label 0.812  label 0.104 ...``: the printed form of `top_k`."""
    return "  ".join(f"{e['label']} {e['probability']:.3f}"
                     for e in top_k(probabilities, k, labels))


def format_prediction(prediction: VideoPrediction, labels: Sequence[str], k: int) -> str:
    """The printed report: one line per window, then the whole-video top-k."""
    def entries(p):
        return top_k_text(p, k, labels)

    lines = [f"{prediction.path} ({prediction.duration:.2f} s, {len(prediction.starts)} windows)"]
    for start, end, p in zip(prediction.starts, prediction.ends, prediction.probabilities):
        lines.append(f"  [{start:7.2f}s - {end:7.2f}s]  {entries(p)}")
    lines.append(f"  video top-{k}: {entries(prediction.video_probabilities)}")
    return "\n".join(lines)


def to_json(prediction: VideoPrediction, labels: Sequence[str], k: int) -> dict:
    return {
        "video": prediction.path,
        "duration": prediction.duration,
        "fps": prediction.fps,
        "windows": [
            {"start": float(s), "end": float(e), "top_k": top_k(p, k, labels)}
            for s, e, p in zip(prediction.starts, prediction.ends, prediction.probabilities)
        ],
        "video_top_k": top_k(prediction.video_probabilities, k, labels),
    }


CSV_HEADER = ("video", "window", "start", "end", "rank", "class_id", "label", "probability")


def csv_rows(prediction: VideoPrediction, labels: Sequence[str], k: int) -> Iterator[list]:
    """One row per window and rank; the whole-video rows have window ``video``."""
    spans = list(zip(range(len(prediction.starts)), prediction.starts, prediction.ends,
                     prediction.probabilities))
    spans.append(("video", 0.0, prediction.duration, prediction.video_probabilities))
    for window, start, end, p in spans:
        for e in top_k(p, k, labels):
            yield [prediction.path, window, f"{start:.3f}", f"{end:.3f}", e["rank"], e["id"],
                   e["label"], f"{e['probability']:.6f}"]


def find_videos(path: str) -> list[str]:
    """`path` itself, or the video files under the directory `path` (sorted, recursive)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise PredictError(f"no such file or directory: {path}")
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(VIDEO_EXTENSIONS)]
    if not found:
        raise PredictError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {path}")
    return found


def per_video_path(output: str, video: str, root: str, several: bool) -> str:
    """`output` for one video; with several videos the video's relative path is inserted."""
    if not several:
        return output
    stem, extension = os.path.splitext(output)
    if output.lower().endswith(".weights.h5"):
        stem, extension = output[: -len(".weights.h5")], ".weights.h5"
    relative = os.path.splitext(os.path.relpath(video, root))[0]
    return f"{stem}.{relative.replace(os.sep, '_')}{extension}"


def read_labels(path: str | None, num_classes: int) -> list[str]:
    """One label per line of `path` (the serving export's reader), or ``0``, ``1``, ..."""
    from slowfast_tf.serving import signatures

    try:
        return signatures.read_labels(path, num_classes)
    except (OSError, ValueError) as e:
        raise PredictError(f"bad --labels: {_one_line(e)}") from e


# === Command line ===


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the command-line flags (kept out of import time, like the other CLIs)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model", None, "A .keras model file (carries its clip spec).", **fv)
    flags.DEFINE_string("preset", None, "Model preset name (with --weights).", **fv)
    flags.DEFINE_string(
        "weights", None, "A .weights.h5 file for --preset; its X.clip_spec.json sidecar, when "
        "present, gives the clip settings.", **fv,
    )
    flags.DEFINE_string("model_overrides", None,
                        "JSON dict of build_model overrides for --preset (as in train.py).", **fv)
    flags.DEFINE_integer("num_classes", None,
                         "Classes of --preset's head; default: the lines of --labels, else the "
                         "preset's.", **fv)
    flags.DEFINE_string("labels", None, "Class names, one per line (default: class ids).", **fv)
    flags.DEFINE_string("clip_spec", None,
                        "Named clip spec (slowfast_tf.clip_spec.CLIP_SPECS) instead of the "
                        "model's.", **fv)
    flags.DEFINE_integer("num_frames", None, "Override: frames per clip.", **fv)
    flags.DEFINE_integer("sampling_rate", None, "Override: frame stride at --target_fps.", **fv)
    flags.DEFINE_float("target_fps", None, "Override: frame rate clips are sampled at.", **fv)
    flags.DEFINE_integer("test_crop", None, "Override: centre crop side.", **fv)
    flags.DEFINE_integer("test_short_side", None, "Override: short side before the crop.", **fv)
    flags.DEFINE_float("stride_seconds", 1.0, "Seconds between window starts.", **fv)
    flags.DEFINE_integer("batch_size", 8, "Windows per model call.", **fv)
    flags.DEFINE_integer("top_k", 5, "Classes printed per window and per video.", **fv)
    flags.DEFINE_string("output_json", None, "Write every window's and video's top-k here.", **fv)
    flags.DEFINE_string("output_csv", None, "Write the same as CSV rows here.", **fv)
    flags.DEFINE_string("features", None,
                        "Write the pooled backbone features per window (.npy, float32 "
                        "[windows, D]; D = 2304 for SlowFast R50).", **fv)
    flags.DEFINE_string("visualize", None,
                        "Write the video with the current top-k and probability bars drawn on "
                        "it (.mp4, or .gif: held in memory, keep it short).", **fv)
    flags.DEFINE_integer("visualize_short_side", 320, "Short side of --visualize frames.", **fv)
    flags.DEFINE_string("timeline", None,
                        "Write a PNG plot of the top-k classes' probabilities over time.", **fv)
    flags.DEFINE_string(
        "boxes", None,
        "Detection models: the CSV of person boxes per keyframe ('sec,x1,y1,x2,y2' normalised; "
        "see slowfast_tf.serving.client.BOXES_CSV_HELP); for a directory of videos, a directory "
        "of <video relative path>.csv files (the videos directory itself when each CSV sits "
        "next to its video). --output_csv is then the official AVA detections format.", **fv,
    )
    flags.DEFINE_bool("progress", True, "Progress bars over videos and windows (stderr).", **fv)


def _check_args(f: flags.FlagValues, argv: Sequence[str]) -> str:
    if len(argv) != 1:
        raise PredictError(
            f"expected one VIDEO_OR_DIR argument. Received: {list(argv) or 'none'}"
        )
    if f.stride_seconds <= 0 or f.batch_size < 1 or f.top_k < 1 or f.visualize_short_side < 2:
        raise PredictError(
            "--stride_seconds must be > 0, --batch_size and --top_k >= 1, "
            f"--visualize_short_side >= 2. Received: stride_seconds={f.stride_seconds}, "
            f"batch_size={f.batch_size}, top_k={f.top_k}, "
            f"visualize_short_side={f.visualize_short_side}"
        )
    for name, extensions in (("output_json", (".json",)), ("output_csv", (".csv",)),
                             ("features", (".npy",)), ("visualize", (".mp4", ".gif")),
                             ("timeline", (".png",))):
        value = getattr(f, name)
        if value and not value.lower().endswith(extensions):
            raise PredictError(f"--{name} must end in {' or '.join(extensions)}. Received: {value}")
    return argv[0]


def _overrides(text: str | None) -> dict:
    if not text:
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise PredictError(f"--model_overrides is not JSON ({e}). Received: {text}") from e
    if not isinstance(values, dict):
        raise PredictError(f"--model_overrides must be a JSON object. Received: {text}")
    return values


def _num_classes(f: flags.FlagValues) -> int | None:
    if f.num_classes or not f.labels or not os.path.isfile(f.labels):
        return f.num_classes
    with open(f.labels, encoding="utf-8", errors="replace") as fh:
        return len(fh.read().rstrip("\n").split("\n"))


def _is_detector(model) -> bool:
    from slowfast_tf import models

    return isinstance(model, models.SlowFastDetector)


def predict_main(argv: Sequence[str], f: flags.FlagValues) -> int:
    """What the command runs once the flags are parsed; returns the exit status."""
    from tqdm import tqdm

    target = _check_args(f, argv)
    videos = find_videos(target)
    model = load_model(f.model, f.preset, f.weights, _num_classes(f), _overrides(f.model_overrides))
    overrides = {name: getattr(f, name) for name in CLIP_FLAGS}
    spec = resolve_clip_spec(model, f.preset, f.weights, f.clip_spec, **overrides)
    labels = read_labels(f.labels, model.num_classes)
    root = target if os.path.isdir(target) else os.path.dirname(target)
    several = os.path.isdir(target)
    if _is_detector(model) != bool(f.boxes):
        raise PredictError(
            f"{model.name} is a detection model: pass --boxes (a CSV of person boxes per "
            "keyframe, 'sec,x1,y1,x2,y2')" if f.boxes is None else
            f"--boxes is for detection models (the ava_* presets); {model.name} is a classifier"
        )
    if f.boxes:
        from slowfast_tf import predict_detection

        return predict_detection.run_videos(f, videos, model, spec, labels, root, several)
    predictor = Predictor(model, spec, f.batch_size)
    k = min(f.top_k, len(labels))
    reports, rows, failed = [], [], 0
    for video in tqdm(videos, unit="video", desc="videos", disable=not (f.progress and several)):
        try:
            prediction = predictor.predict_video(video, f.stride_seconds, f.progress)
        except video_io.VideoError as e:
            print(f"error: {video}: {e}" if video not in str(e) else f"error: {e}",
                  file=sys.stderr)
            failed += 1
            continue
        print(format_prediction(prediction, labels, k), flush=True)
        reports.append(to_json(prediction, labels, k))
        rows += list(csv_rows(prediction, labels, k))
        if f.features:
            with fileio.atomic_path(per_video_path(f.features, video, root, several)) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, prediction.features)
        if f.visualize:
            visualize.write_overlay_video(per_video_path(f.visualize, video, root, several),
                                          prediction, labels, k, f.visualize_short_side)
        if f.timeline:
            visualize.write_timeline(per_video_path(f.timeline, video, root, several), prediction,
                                     labels, k)
    summary = {"clip_spec": spec.to_dict(), "stride_seconds": f.stride_seconds,
               "videos": reports}
    if f.output_json:
        fileio.atomic_write_text(f.output_json, json.dumps(summary, indent=2) + "\n")
    if f.output_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
        fileio.atomic_write_text(f.output_csv, buffer.getvalue())
    return 2 if failed else 0


def main(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """`predict_main` on parsed flags (``argv[0]`` is the program); errors are one line, 2."""
    try:
        return predict_main(list(argv)[1:], flag_values)
    except (PredictError, video_io.VideoError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2


def _parse(argv: Sequence[str], flag_values: flags.FlagValues) -> list[str] | None:
    try:
        return flag_values(list(argv))
    except flags.Error as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return None


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's parser for `app.run`; a bad flag is one ``error:`` line and exit status 2."""
    rest = _parse(argv, flags.FLAGS)
    if rest is None:
        sys.exit(2)
    return rest


def run(argv: Sequence[str]) -> int:
    """The command in process, with its own flag values (tests; no ``--help``)."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    rest = _parse(argv, flag_values)
    return 2 if rest is None else main(rest, flag_values)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
