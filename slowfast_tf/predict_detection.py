r"""``predict --boxes``: per-person actions of an AVA detector at the keyframes of a boxes CSV.

    python -m slowfast_tf.predict my_video.mp4 --model detector.keras --boxes my_video.csv \
        --labels actions.txt --output_json dets.json --output_csv dets.csv --visualize dets.mp4

The boxes CSV is the serving client's (`slowfast_tf.serving.client.BOXES_CSV_HELP`): one person
box per line, ``sec,x1,y1,x2,y2`` (or ``x1,y1,x2,y2`` for the video's middle frame), normalised.
Each distinct ``sec`` is a keyframe. Its clip is sampled as the AVA pipeline and the client sample
it (`client.keyframe_clips`: ``num_frames`` frames ``sampling_rate`` apart at ``target_fps``,
centred on the keyframe, clamped to the video) and goes, with the keyframe's boxes, through the
detector's serving preprocessing (`detection_signatures.preprocess`: full frame at the clip spec's
short side, normalisation, pathway packing, boxes padded to ``max_boxes`` slots). A keyframe with
more boxes than ``max_boxes`` runs in several model inputs (boxes do not interact). Probabilities
are the eval model's per-box sigmoid outputs; column ``c`` is AVA action id ``c + 1``.

The frames up to the last keyframe's window are decoded at the model's short side and held in
memory (as in the client): 224 x 398 x 3 bytes = 0.27 MB per frame at short side 224 (16:9), so split long
videos or their CSVs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np

from slowfast_tf.clip_spec import ClipSpec


@dataclasses.dataclass
class KeyframePrediction:
    """One keyframe's boxes and their action probabilities.

    ``sec`` is the CSV's time (None: the middle frame), ``time`` the keyframe's time in seconds,
    ``frame`` its native frame, ``first_frame`` / ``last_frame`` the span of its clip's native
    frames, ``boxes`` float32 ``[N, 4]`` and ``probabilities`` float32 ``[N, classes]``.
    """

    sec: float | None
    time: float
    frame: int
    first_frame: int
    last_frame: int
    boxes: np.ndarray
    probabilities: np.ndarray


@dataclasses.dataclass
class DetectionPrediction:
    """Everything `DetectionPredictor.predict_video` computed for one video (``fps``: source)."""

    path: str
    fps: float
    keyframes: list[KeyframePrediction]


class DetectionPredictor:
    """Runs a ``SlowFastDetector`` on the keyframes of a boxes CSV.

    Args:
        model: a ``SlowFastDetector``.
        spec: its `ClipSpec` (the test view: full frame at ``spec.short_side``).
        batch_size: int, model inputs (keyframes, or slices of ``max_boxes`` boxes) per call.
    """

    def __init__(self, model, spec: ClipSpec, batch_size: int = 8):
        import tensorflow as tf

        from slowfast_tf.data.ava import ava_pipeline
        from slowfast_tf.serving import detection_signatures

        self.spec, self.batch_size = spec, batch_size
        self.max_boxes = model.max_boxes or ava_pipeline.AvaDataConfig.max_boxes
        self.config = ava_pipeline.config_from_clip_spec(
            spec, max_boxes=self.max_boxes, num_classes=model.num_classes
        )
        self.eval_model = model.build_eval_model()
        self._preprocess = tf.function(
            lambda clip, boxes: detection_signatures.preprocess(clip, boxes, self.config),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8),
                             tf.TensorSpec([None, 4], tf.float32)],
        )

    def preprocess(self, clip: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs (batch 1) of one clip and at most ``max_boxes`` boxes."""
        return {key: v.numpy() for key, v in self._preprocess(clip, boxes).items()}

    def predict_video(self, path: str, keyframes: Sequence, progress: bool = False
                      ) -> DetectionPrediction:
        """`keyframes`: `client.Keyframe`s (from `client.read_boxes_csv`)."""
        from tqdm import tqdm

        from slowfast_tf import video_io
        from slowfast_tf.serving import client

        spec = self.spec
        fps = video_io.probe(path).fps
        bar = tqdm(total=len(keyframes), unit="keyframe", desc=os.path.basename(path)[:30],
                   leave=False, disable=not progress)
        inputs, owners, results = [], [], []
        for keyframe, idx, clip in client.keyframe_clips(
            path, list(keyframes), spec.num_frames, spec.sampling_rate, spec.target_fps,
            spec.short_side, fps,
        ):
            time = keyframe.sec if keyframe.sec is not None else idx[len(idx) // 2] / fps
            results.append(KeyframePrediction(
                keyframe.sec, float(time), int(idx[len(idx) // 2]), int(idx.min()),
                int(idx.max()), keyframe.boxes, np.zeros((0,), np.float32)))
            for start in range(0, len(keyframe.boxes), self.max_boxes):
                inputs.append(self.preprocess(clip, keyframe.boxes[start : start + self.max_boxes]))
                owners.append(len(results) - 1)
            if len(inputs) >= self.batch_size:
                self._run(inputs, owners, results)
            bar.update(1)
        self._run(inputs, owners, results)
        bar.close()
        return DetectionPrediction(path, float(fps), results)

    def _run(self, inputs: list, owners: list, results: list[KeyframePrediction]) -> None:
        if not inputs:
            return
        batch = {key: np.concatenate([x[key] for x in inputs]) for key in inputs[0]}
        probabilities = np.asarray(self.eval_model.predict_on_batch(batch)["probabilities"])
        for row, (owner, x) in enumerate(zip(owners, inputs)):
            n = int(x["box_mask"][0].sum())
            kf = results[owner]
            kf.probabilities = np.concatenate(
                [kf.probabilities.reshape(-1, probabilities.shape[-1]),
                 probabilities[row, :n].astype(np.float32)])
        inputs.clear()
        owners.clear()


# === Outputs ===


def format_prediction(prediction: DetectionPrediction, labels: Sequence[str], k: int) -> str:
    """The printed report: per keyframe, one line per box with its top-k actions."""
    from slowfast_tf.predict import top_k_text

    count = sum(len(kf.boxes) for kf in prediction.keyframes)
    lines = [f"{prediction.path} ({len(prediction.keyframes)} keyframes, {count} boxes)"]
    for kf in prediction.keyframes:
        lines.append(f"  keyframe {kf.time:7.2f}s: {len(kf.boxes)} box(es)")
        for row, (box, p) in enumerate(zip(kf.boxes, kf.probabilities)):
            coords = ", ".join(f"{v:.3f}" for v in box)
            lines.append(f"    box {row + 1} [{coords}]  {top_k_text(p, k, labels)}")
    return "\n".join(lines)


def keyframe_json(kf: KeyframePrediction, labels: Sequence[str], k: int) -> dict:
    """``{"sec", "time", "boxes": [{"box", "top_k"}]}`` of one keyframe."""
    from slowfast_tf.predict import top_k

    boxes = [{"box": [float(v) for v in box], "top_k": top_k(p, k, labels)}
             for box, p in zip(kf.boxes, kf.probabilities)]
    return {"sec": kf.sec, "time": kf.time, "boxes": boxes}


def to_json(prediction: DetectionPrediction, labels: Sequence[str], k: int) -> dict:
    keyframes = [keyframe_json(kf, labels, k) for kf in prediction.keyframes]
    return {"video": prediction.path, "fps": prediction.fps, "keyframes": keyframes}


def ava_rows(prediction: DetectionPrediction, video_id: str) -> Iterator:
    """The official AVA detections rows (`ava_files.AvaRow`): one per box and action id (column
    ``c`` -> id ``c + 1``), timestamp = the keyframe's whole second.

    Raises:
        PredictError: a keyframe time that is not a whole second (the format has none).
    """
    from slowfast_tf.data.ava import ava_files
    from slowfast_tf.predict import PredictError

    for kf in prediction.keyframes:
        if kf.sec is None or not math.isclose(kf.sec, round(kf.sec), abs_tol=1e-6):
            raise PredictError(
                "--output_csv writes the official AVA detections format, whose timestamps are "
                f"whole seconds; {prediction.path} has a keyframe at "
                f"{'the middle frame' if kf.sec is None else f'{kf.sec:g} s'} (use --output_json)"
            )
        num_classes = kf.probabilities.shape[-1]
        keys = [(video_id, int(round(kf.sec)))] * len(kf.boxes)
        yield from ava_files.detections_from_scores(keys, kf.boxes, kf.probabilities,
                                                    range(1, num_classes + 1))


# === Command line (called by `slowfast_tf.predict.predict_main`) ===


def boxes_csv_for(video: str, boxes: str, root: str, several: bool) -> str:
    """The boxes CSV of `video`: `boxes` itself (one video), or, when `boxes` is a directory,
    ``<boxes>/<video's path under root, extension .csv>`` (``--boxes`` = the videos directory:
    each CSV next to its video)."""
    from slowfast_tf.predict import PredictError

    if os.path.isdir(boxes):
        relative = os.path.relpath(video, root) if several else os.path.basename(video)
        return os.path.join(boxes, os.path.splitext(relative)[0] + ".csv")
    if several:
        raise PredictError(f"with a directory of videos, --boxes must be a directory of "
                           f"<video name>.csv files. Received: {boxes}")
    return boxes


def run_videos(f, videos: list[str], model, spec: ClipSpec, labels: Sequence[str], root: str,
               several: bool) -> int:
    """``predict --boxes``: every video with its CSV; writes the outputs; returns the status.

    A missing or bad CSV, an unreadable video or a keyframe past the video's end is one
    ``error:`` line for that video (the others are still processed) and status 2.
    """
    import sys

    from tqdm import tqdm

    from slowfast_tf import predict, video_io, visualize
    from slowfast_tf.data.ava import ava_files
    from slowfast_tf.serving import client
    from slowfast_tf.utils import fileio

    for name in ("features", "timeline"):
        if getattr(f, name):
            raise predict.PredictError(f"--{name} is for classifiers; a detector with --boxes "
                                       "writes --output_json, --output_csv and --visualize")
    predictor = DetectionPredictor(model, spec, f.batch_size)
    k = min(f.top_k, len(labels))
    reports, rows, failed = [], [], 0
    for video in tqdm(videos, unit="video", desc="videos", disable=not (f.progress and several)):
        csv_path = boxes_csv_for(video, f.boxes, root, several)
        try:
            if not os.path.isfile(csv_path):
                raise ValueError(f"no boxes CSV {csv_path} for {video}")
            keyframes = client.read_boxes_csv(csv_path)  # a bad CSV fails before decoding
            prediction = predictor.predict_video(video, keyframes, f.progress)
            video_id = os.path.splitext(os.path.basename(video))[0]
            video_rows = list(ava_rows(prediction, video_id)) if f.output_csv else []
        except (ValueError, video_io.VideoError) as e:
            text = predict._one_line(e)
            print(f"error: {text}" if video in text or csv_path in text
                  else f"error: {video}: {text}", file=sys.stderr)
            failed += 1
            continue
        print(format_prediction(prediction, labels, k), flush=True)
        reports.append(to_json(prediction, labels, k))
        rows += video_rows
        if f.visualize:
            visualize.write_box_video(predict.per_video_path(f.visualize, video, root, several),
                                      prediction, labels, k, f.visualize_short_side)
    if f.output_json:
        summary = {"clip_spec": spec.to_dict(), "videos": reports}
        fileio.atomic_write_text(f.output_json, json.dumps(summary, indent=2) + "\n")
    if f.output_csv:
        ava_files.write_detections(f.output_csv, rows)
    return 2 if failed else 0
