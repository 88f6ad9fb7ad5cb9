r"""Client for a SlowFast model behind TensorFlow Serving (gRPC or REST).

Decodes a video with `slowfast_tf.video_io` (the records' decoder and resize rule), samples one
clip the way PySlowFast samples a test view, and calls `PredictionService.Predict` (gRPC, port
8500) or `POST /v1/models/<name>:predict` (REST, 8501):

    python -m slowfast_tf.serving.client --video x.mp4 --server localhost:8500
    python -m slowfast_tf.serving.client --video x.mp4 --server localhost:8501 --rest

The clip settings (frames, sampling rate, fps, short side) are asked from the served model first
(its `metadata` signature returns its `ClipSpec`), so no clip flag is needed; `--num_frames`,
`--sampling_rate`, `--target_fps` and `--resize_short_side` only override them. The numeric
preprocessing (short side, center crop, normalisation, pathway packing) runs inside the
SavedModel. The client only downsizes frames to the model's short side while decoding, by the
same rule as `tfrecords_tools` records (`slowfast_tf.video_io`; PySlowFast's datasets are
pre-resized to 256 with ffmpeg too), which keeps a 32-frame request at ~6 MB instead of ~200 MB
at 1080p.

AVA detectors (``export.py`` of a ``SlowFastDetector``) take person boxes as well; ``--boxes``
reads them from a CSV (format: `read_boxes_csv`) and prints the top-k actions of every box:

    python -m slowfast_tf.serving.client --video x.mp4 --boxes boxes.csv --server localhost:8500
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

if __name__ == "__main__":  # Before TF is imported: no duplicated start-up/cuInit noise.
    from slowfast_tf.utils import tf_startup

    tf_startup.quiet_tf_startup()

import grpc  # noqa: E402
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from slowfast_tf import video_io
from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.data import transforms
from slowfast_tf.serving import signatures
from slowfast_tf.serving.payloads import encode_sequence_example

FRAMES_KEY = "frames"
EXAMPLES_KEY = "examples"
BOXES_KEY = "boxes"


def decode_video(
    path: str, resize_short_side: int = 0, max_frames: int | None = None
) -> tuple[np.ndarray, float]:
    """Decodes the first video stream to RGB uint8 with `video_io.read_frames`.

    Args:
        path: video file readable by FFmpeg.
        resize_short_side: if > 0, resize so the short side has this length by the records'
            rule (`video_io.output_size`: AREA, long side rounded to even), so served frames
            match the training records.
        max_frames: stop after this many frames (None: the whole video).

    Returns:
        `(frames uint8 [N, H, W, 3], fps)` at the source's average rate.
    """
    return video_io.read_frames(
        path, short_side=resize_short_side, max_frames=max_frames, progress=True
    )


def clip_indices(
    num_decoded: int,
    fps: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float = 30.0,
    position: str = "start",
) -> np.ndarray:
    """Indices of one test clip, computed by the data layer's sampler (REFERENCE_SPEC §3).

    The window spans `sampling_rate * num_frames / target_fps * fps` native frames; indices are
    torch-style `linspace(start, end, num_frames)`, clamped and truncated. `position="start"`
    is PySlowFast's single test view (and the PyTorchVideo tutorial's clip from 0 s), i.e. what
    `serve_examples` picks from a whole video; `"center"` centers the window.
    """
    if position not in ("start", "center"):
        raise ValueError(f"`position` must be 'start' or 'center'. Received: position={position!r}")
    if num_decoded < 1 or num_frames < 1 or sampling_rate < 1 or fps <= 0:
        raise ValueError(
            "clip_indices needs num_decoded, num_frames, sampling_rate >= 1 and fps > 0. "
            f"Received: num_decoded={num_decoded}, num_frames={num_frames}, "
            f"sampling_rate={sampling_rate}, fps={fps}"
        )
    clip_size = transforms.clip_size_in_frames(fps, num_frames, sampling_rate, target_fps)
    # start = delta * clip_idx / num_clips: view 0 of 1 starts at 0, view 1 of 2 is centered.
    clip_idx, num_clips = (0, 1) if position == "start" else (1, 2)
    idx = transforms.temporal_sample_indices(
        num_decoded, num_frames, clip_size, clip_idx, num_clips, seed=tf.zeros([2], tf.int32)
    )
    return idx.numpy().astype(np.int64)


def validate_frames(frames) -> np.ndarray:
    """Checks the `serving_default` contract (uint8 `[batch, T, H, W, 3]`) before sending."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"`frames` must be a numpy array. Received: type={type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(
            "`frames` must be uint8 RGB in [0, 255] (the server normalises). "
            f"Received: dtype={frames.dtype}"
        )
    if frames.ndim != 5 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            "`frames` must have shape [batch, T, H, W, 3] with no empty dimension. "
            f"Received: shape={list(frames.shape)}"
        )
    return frames


def _request_inputs(
    frames: np.ndarray, signature_name: str, fps: float, boxes: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    frames = validate_frames(frames)
    if boxes is not None:
        return _detection_inputs(frames, boxes, signature_name)
    if signature_name == "serve_examples":
        examples = [encode_sequence_example(f, fps) for f in frames]
        return {EXAMPLES_KEY: np.array(examples, dtype=object)}
    if signature_name != "serving_default":
        raise ValueError(
            "`signature_name` must be 'serving_default' or 'serve_examples'. "
            f"Received: signature_name={signature_name!r}"
        )
    return {FRAMES_KEY: frames}


def _call_grpc(
    inputs: dict[str, np.ndarray], server: str, model_name: str, signature_name: str,
    timeout: float,
) -> dict[str, np.ndarray]:
    """One `PredictionService.Predict` call with numpy `inputs`; numpy outputs."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    # Raw clips exceed gRPC's default 4 MB limit; TF Serving itself accepts up to INT32_MAX.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise RuntimeError(f"Predict failed: {e.code().name}: {e.details()}") from e
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def predict_grpc(
    frames: np.ndarray,
    server: str,
    model_name: str = "slowfast",
    signature_name: str = "serving_default",
    timeout: float = 60.0,
    fps: float = 30.0,
    boxes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Calls `PredictionService.Predict`; returns the outputs as numpy arrays.

    `frames` is uint8 `[batch, T, H, W, 3]`: a clip for `serving_default`, or whole videos at
    `fps` for `serve_examples` (sent as JPEG SequenceExamples; the server samples the clip).

    Raises:
        ValueError: bad `frames` (checked before sending).
        RuntimeError: the server rejected the request (message carries the gRPC status).

    `boxes` (detectors only): float32 `[N, 4]` normalised `(x1, y1, x2, y2)` of `frames`' batch 1.
    """
    inputs = _request_inputs(frames, signature_name, fps, boxes)
    return _call_grpc(inputs, server, model_name, signature_name, timeout)


def _call_rest(
    inputs: dict[str, np.ndarray], server: str, model_name: str, signature_name: str,
    timeout: float, single_output: str = "probabilities",
) -> dict[str, np.ndarray]:
    """One `POST /v1/models/<name>:predict` (columnar `inputs`); numpy outputs. A signature
    with one output answers with a bare list, returned under the key `single_output`."""
    payload = {}
    for key, value in inputs.items():
        if value.dtype == object:  # bytes travel base64-encoded in the REST API
            payload[key] = [{"b64": base64.b64encode(b).decode("ascii")} for b in value]
        else:
            payload[key] = value.tolist()
    body = json.dumps({"signature_name": signature_name, "inputs": payload}).encode()
    url = f"http://{server}/v1/models/{model_name}:predict"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            result = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except json.JSONDecodeError:
            pass
        raise RuntimeError(f"Predict failed: HTTP {e.code}: {detail}") from e
    outputs = result["outputs"]
    if not isinstance(outputs, dict):  # a single-output signature answers with a bare list
        outputs = {single_output: outputs}
    return {k: np.asarray(v) for k, v in outputs.items()}


def predict_rest(
    frames: np.ndarray,
    server: str,
    model_name: str = "slowfast",
    signature_name: str = "serving_default",
    timeout: float = 60.0,
    fps: float = 30.0,
    boxes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """`POST http://<server>/v1/models/<model_name>:predict` in the columnar `inputs` format."""
    inputs = _request_inputs(frames, signature_name, fps, boxes)
    return _call_rest(inputs, server, model_name, signature_name, timeout)


def fetch_clip_spec(
    server: str, model_name: str = "slowfast", rest: bool = False, timeout: float = 60.0
) -> ClipSpec | None:
    """The served model's `ClipSpec`, from its `metadata` signature (see serving/signatures.py).

    Returns None for an export made before clip specs were saved (no `metadata` signature).

    Raises:
        RuntimeError: the server could not be asked (unreachable, unknown model, ...).
    """
    inputs = {signatures.METADATA_INPUT_KEY: np.zeros([1], np.int32)}
    try:
        if rest:
            outputs = _call_rest(inputs, server, model_name, signatures.METADATA_SIGNATURE,
                                 timeout, single_output=signatures.CLIP_SPEC_KEY)
        else:
            outputs = _call_grpc(inputs, server, model_name, signatures.METADATA_SIGNATURE,
                                 timeout)
    except RuntimeError as e:
        # TF Serving: 'Serving signature name: "metadata" not found in signature def'.
        if f'"{signatures.METADATA_SIGNATURE}" not found' in str(e):
            return None
        raise
    return signatures.clip_spec_from_metadata(outputs)


def resolve_clip_spec(
    server: str, model_name: str = "slowfast", rest: bool = False, timeout: float = 60.0,
    **overrides,
) -> ClipSpec:
    """The model's clip spec (`fetch_clip_spec`) with the non-None `overrides` (flags) applied;
    PySlowFast's Kinetics defaults (`ClipSpec()`) with a warning for an export without one."""
    spec = fetch_clip_spec(server, model_name, rest, timeout)
    if spec is None:
        print(f"warning: model {model_name!r} at {server} has no `metadata` signature (exported "
              "before clip specs); using ClipSpec() defaults and the flags.", file=sys.stderr)
        spec = ClipSpec()
    return spec.override(**overrides)


def _window_frames(fps: float, num_frames: int, sampling_rate: int, target_fps: float) -> int:
    """Native frames covered by one clip window (`ceil` of the data layer's clip size)."""
    size = float(transforms.clip_size_in_frames(fps, num_frames, sampling_rate, target_fps))
    return max(1, math.ceil(size))


def center_square(frames: np.ndarray) -> np.ndarray:
    """Center-crops `[..., H, W, 3]` frames to `min(H, W)` squared (offset `ceil((L - S) / 2)`).

    Center crops compose (the server's `crop x crop` center of this square is its center crop of
    the full frame), so with `--resize_short_side` equal to the server's short side the result is
    unchanged, while every request gets the same `[T, S, S, 3]` shape, which server-side batching
    needs, and a 16:9 frame shrinks by 44%.
    """
    h, w = frames.shape[-3], frames.shape[-2]
    size = min(h, w)
    y0, x0 = (h - size + 1) // 2, (w - size + 1) // 2
    return frames[..., y0 : y0 + size, x0 : x0 + size, :]


def load_clip(
    video: str,
    num_frames: int = 32,
    sampling_rate: int = 2,
    target_fps: float = 30.0,
    resize_short_side: int = 256,
    position: str = "start",
    square: bool = True,
) -> np.ndarray:
    """Decodes `video` and returns one clip as uint8 `[1, num_frames, H, W, 3]`.

    With `position="start"` only the frames of the first window are decoded; `square` applies
    `center_square`.
    """
    max_frames = None
    if position == "start":
        fps = video_io.probe(video).fps
        max_frames = _window_frames(fps, num_frames, sampling_rate, target_fps)
    frames, fps = decode_video(video, resize_short_side, max_frames)
    idx = clip_indices(len(frames), fps, num_frames, sampling_rate, target_fps, position)
    clip = frames[idx][None]
    return center_square(clip) if square else clip


def format_top_k(outputs: dict[str, np.ndarray], row: int = 0) -> str:
    """Human-readable top-k lines for one batch row."""
    ids, labels = outputs["top_k_ids"][row], outputs["top_k_labels"][row]
    probs = outputs["probabilities"][row]
    lines = []
    for rank, (i, label) in enumerate(zip(ids, labels), start=1):
        label = label.decode() if isinstance(label, bytes) else str(label)
        lines.append(f"{rank}. {label} (id {int(i)}, p={float(probs[int(i)]):.4f})")
    return "\n".join(lines)


def classify(
    video: str,
    server: str,
    rest: bool = False,
    model_name: str = "slowfast",
    signature_name: str = "serving_default",
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    target_fps: float | None = None,
    resize_short_side: int | None = None,
    position: str = "start",
    timeout: float = 60.0,
    max_frames: int | None = None,
    square: bool = True,
    clip_spec: ClipSpec | None = None,
) -> dict[str, np.ndarray]:
    """Decode, sample and send one video; what the command line runs.

    The clip settings come from the served model (`resolve_clip_spec`, or `clip_spec` when
    given); `num_frames`, `sampling_rate` and `target_fps` override them when not None, and
    `resize_short_side` (None: the model's short side; 0: full size) sets the decode-time
    downsizing. `serving_default` sends the sampled clip; `serve_examples` sends the whole
    (resized) video, or its first `max_frames` frames, as a SequenceExample and lets the server
    cut the clip (its window always starts at frame 0).
    """
    overrides = dict(num_frames=num_frames, sampling_rate=sampling_rate, target_fps=target_fps)
    if clip_spec is None:
        clip_spec = resolve_clip_spec(server, model_name, rest, timeout, **overrides)
    else:
        clip_spec = clip_spec.override(**overrides)
    if resize_short_side is None:
        resize_short_side = clip_spec.short_side
    predict = predict_rest if rest else predict_grpc
    if signature_name == "serve_examples":
        # The server samples with the model's own sampling rate, so it gets the whole video
        # unless `max_frames` caps it (the server's window starts at frame 0: a cap that covers
        # the window changes nothing).
        frames, fps = decode_video(video, resize_short_side, max_frames)
        frames = center_square(frames) if square else frames
        return predict(frames[None], server, model_name, signature_name, timeout, fps=fps)
    clip = load_clip(
        video, clip_spec.num_frames, clip_spec.sampling_rate, clip_spec.target_fps,
        resize_short_side, position, square,
    )
    return predict(clip, server, model_name, signature_name, timeout)


# ------------------------------------------------------------------ detection (--boxes) ---
BOXES_CSV_HELP = (
    "CSV of person boxes for an AVA detector: one box per line, 'x1,y1,x2,y2' normalised to the "
    "frame (0 = left / top edge, 1 = right / bottom), or 'sec,x1,y1,x2,y2' with the keyframe time "
    "in seconds from the video start (one request per distinct sec; without it the keyframe is "
    "the video's middle frame). Blank lines, '#' comments and a header line of those names are "
    "skipped."
)
_BOX_HEADERS = (["x1", "y1", "x2", "y2"], ["sec", "x1", "y1", "x2", "y2"])


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """The boxes of one keyframe read by `read_boxes_csv`.

    Args:
        sec: float keyframe time in seconds from the video start, or None (the middle frame).
        boxes: float32 `[N, 4]` normalised `(x1, y1, x2, y2)`.
    """

    sec: float | None
    boxes: np.ndarray


def validate_boxes(boxes) -> np.ndarray:
    """Checks the detection signature's `boxes` contract: float `[N, 4]`, N >= 1, normalised
    `x1 < x2`, `y1 < y2` in `[0, 1]`. Returns float32 boxes."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] < 1:
        raise ValueError(
            f"`boxes` must have shape [N, 4] with N >= 1. Received: shape={list(boxes.shape)}"
        )
    if boxes.dtype.kind not in "iuf" or not np.all(np.isfinite(boxes)):
        raise ValueError(f"`boxes` must be finite numbers. Received: dtype={boxes.dtype}")
    boxes = boxes.astype(np.float32)
    if boxes.min() < 0 or boxes.max() > 1:
        raise ValueError("`boxes` must be normalised: every coordinate in [0, 1]. "
                         f"Received: min={boxes.min()}, max={boxes.max()}")
    if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
        raise ValueError("`boxes` rows must have x2 > x1 and y2 > y1. "
                         f"Received: {boxes.tolist()}")
    return boxes


def _detection_inputs(frames: np.ndarray, boxes, signature_name: str) -> dict[str, np.ndarray]:
    if signature_name != "serving_default":
        raise ValueError("Detectors have only the 'serving_default' signature. "
                         f"Received: signature_name={signature_name!r}")
    if frames.shape[0] != 1:
        raise ValueError("A detection request holds one clip (the boxes belong to its keyframe). "
                         f"Received: frames of shape {list(frames.shape)}")
    return {FRAMES_KEY: frames, BOXES_KEY: validate_boxes(boxes)}


def read_boxes_csv(path: str) -> list[Keyframe]:
    """Reads a `--boxes` file (format: `BOXES_CSV_HELP`) into keyframes, in first-seen order.

    Raises:
        ValueError: one line naming the file, the line number and the rule.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read --boxes file {path!r}: {e}") from e
    rows, width = {}, None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = [x.strip() for x in text.split(",")]
        if width is None and [x.lower() for x in fields] in _BOX_HEADERS:
            width = len(fields)
            continue
        where = f"{path} line {number}"
        if len(fields) not in (4, 5) or (width is not None and len(fields) != width):
            expected = f"{width} columns" if width else "4 columns (x1,y1,x2,y2) or 5 (sec,x1,...)"
            raise ValueError(f"{where}: expected {expected}, got {len(fields)}: {text!r}")
        width = len(fields)
        try:
            values = [float(x) for x in fields]
        except ValueError:
            raise ValueError(f"{where}: every field must be a number. Received: {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{where}: every field must be finite. Received: {text!r}")
        sec = values[0] if width == 5 else None
        box = values[-4:]
        if sec is not None and sec < 0:
            raise ValueError(f"{where}: sec must be >= 0. Received: {text!r}")
        if min(box) < 0 or max(box) > 1:
            raise ValueError(f"{where}: box coordinates must be normalised to [0, 1]. "
                             f"Received: {text!r}")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"{where}: a box needs x2 > x1 and y2 > y1. Received: {text!r}")
        rows.setdefault(sec, []).append(box)
    if not rows:
        raise ValueError(f"{path}: no boxes (one 'x1,y1,x2,y2' line per person).")
    return [Keyframe(sec, np.array(b, np.float32)) for sec, b in rows.items()]


def keyframe_clip_indices(
    num_decoded: int, fps: float, sec: float | None, num_frames: int, sampling_rate: int,
    target_fps: float = 30.0,
) -> np.ndarray:
    """Native frame indices of the clip centred on a keyframe, as the AVA data layer samples it.

    The AVA records store frames at `target_fps` (30); `ava_pipeline.clip_indices` takes
    `num_frames` frames `sampling_rate` apart centred on frame `round(sec * target_fps)`, clamped
    to the video. Those indices are mapped to the nearest native frame (identity at 30 fps).
    `sec=None` centres the clip on the middle frame.
    """
    from slowfast_tf.data.ava import ava_pipeline

    if num_decoded < 1 or fps <= 0 or num_frames < 1 or sampling_rate < 1:
        raise ValueError("keyframe_clip_indices needs num_decoded, num_frames, sampling_rate >= 1 "
                         f"and fps > 0. Received: {num_decoded}, {num_frames}, {sampling_rate}, "
                         f"{fps}")
    length = (num_decoded - 1) * target_fps / fps  # last frame on the target_fps timeline
    if sec is not None and sec * target_fps > length + 0.5:
        raise ValueError(f"Keyframe at {sec} s is past the end of the video "
                         f"({num_decoded} frames at {fps:g} fps = {num_decoded / fps:.2f} s).")
    centre = round(length / 2) if sec is None else round(sec * target_fps)
    idx = ava_pipeline.clip_indices(centre, num_frames, sampling_rate, math.floor(length) + 1)
    native = np.round(idx.numpy() * fps / target_fps).astype(np.int64)
    return np.clip(native, 0, num_decoded - 1)


def detect(
    video: str,
    boxes_csv: str,
    server: str,
    rest: bool = False,
    model_name: str = "slowfast",
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    target_fps: float | None = None,
    resize_short_side: int | None = None,
    timeout: float = 60.0,
) -> list[tuple[Keyframe, dict[str, np.ndarray]]]:
    """`--boxes`: one detection request per keyframe of `boxes_csv`; what the command line runs.

    Clip settings left None come from the served model (`resolve_clip_spec`). Each request sends
    the whole frame (short side `resize_short_side`, no square crop: the
    boxes are normalised to the full frame) of the `num_frames` x `sampling_rate` clip centred on
    the keyframe, and the keyframe's boxes. Decoding stops after the last keyframe's window.

    Returns:
        `[(Keyframe, outputs)]`; `outputs` holds `probabilities` `[N, C]`, `top_k_ids` and
        `top_k_labels` `[N, k]`, one row per box.
    """
    keyframes = read_boxes_csv(boxes_csv)  # a bad CSV fails before the video is decoded
    fps = video_io.probe(video).fps  # so does an unreadable video, before the server is asked
    if None in (num_frames, sampling_rate, target_fps, resize_short_side):
        spec = resolve_clip_spec(server, model_name, rest, timeout, num_frames=num_frames,
                                 sampling_rate=sampling_rate, target_fps=target_fps)
        num_frames, sampling_rate, target_fps = spec.num_frames, spec.sampling_rate, spec.target_fps
        if resize_short_side is None:
            resize_short_side = spec.short_side
    predict = predict_rest if rest else predict_grpc
    out = []
    for keyframe, _, clip in keyframe_clips(video, keyframes, num_frames, sampling_rate,
                                            target_fps, resize_short_side, fps):
        outputs = predict(clip[None], server, model_name, timeout=timeout, boxes=keyframe.boxes)
        out.append((keyframe, outputs))
    return out


def keyframe_clips(
    video: str, keyframes: list[Keyframe], num_frames: int, sampling_rate: int,
    target_fps: float, resize_short_side: int, fps: float | None = None,
) -> Iterator[tuple[Keyframe, np.ndarray, np.ndarray]]:
    """The clip of every keyframe: ``(keyframe, native frame indices [T], uint8 [T, H, W, 3])``.

    Decodes `video` once (short side `resize_short_side`, full frame), stopping after the last
    keyframe's window when every keyframe has a time (`fps`: the source rate, probed when None);
    the clips are `keyframe_clip_indices` of those frames. The decoded frames are held until the
    generator ends (the client and ``predict --boxes`` share this).
    """
    fps = fps or video_io.probe(video).fps
    max_frames = None
    if all(k.sec is not None for k in keyframes):
        last = round(max(k.sec for k in keyframes) * target_fps) + num_frames * sampling_rate
        max_frames = math.ceil(last * fps / target_fps) + 2
    frames, fps = decode_video(video, resize_short_side, max_frames)
    for keyframe in keyframes:
        idx = keyframe_clip_indices(len(frames), fps, keyframe.sec, num_frames, sampling_rate,
                                    target_fps)
        yield keyframe, idx, frames[idx]


def format_detections(results: list[tuple[Keyframe, dict[str, np.ndarray]]]) -> str:
    """Human-readable per-box top-k lines of `detect`'s results."""
    lines = []
    for keyframe, outputs in results:
        where = "middle frame" if keyframe.sec is None else f"{keyframe.sec:g} s"
        lines.append(f"keyframe {where}: {len(keyframe.boxes)} box(es)")
        for row, box in enumerate(keyframe.boxes):
            coords = ", ".join(f"{v:.3f}" for v in box)
            lines.append(f"  box {row + 1} [{coords}]")
            lines += ["    " + line for line in format_top_k(outputs, row).splitlines()]
    return "\n".join(lines)


def define_flags(flag_values=flags.FLAGS):
    """Defines the command-line flags (kept out of import time: export.py shares some names)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("video", None, "Video file to classify.", **fv)
    flags.DEFINE_string("server", "localhost:8500", "host:port (8500 gRPC, 8501 REST).", **fv)
    flags.DEFINE_bool("rest", False, "Use the REST JSON API instead of gRPC.", **fv)
    flags.DEFINE_string("model_name", "slowfast", "Model name in TF Serving's models.config.", **fv)
    flags.DEFINE_enum(
        "signature_name", "serving_default", ["serving_default", "serve_examples"],
        "serving_default sends the sampled uint8 clip; serve_examples sends the whole video as "
        "a JPEG SequenceExample and the server samples the clip.", **fv,
    )
    # Clip settings: asked from the model (its `metadata` signature); these flags override them.
    flags.DEFINE_integer(
        "num_frames", None,
        "Override: frames sent (the server resamples to the model's T); default: the model's.",
        **fv,
    )
    flags.DEFINE_integer(
        "sampling_rate", None, "Override: stride between frames at --target_fps.", **fv
    )
    flags.DEFINE_float("target_fps", None, "Override: frame rate --sampling_rate refers to.", **fv)
    flags.DEFINE_enum(
        "clip_position", "start", ["start", "center"],
        "start = PySlowFast's single test view; center = middle of the video.", **fv,
    )
    flags.DEFINE_integer(
        "resize_short_side", None,
        "Client-side downsizing while decoding; default: the model's short side; 0 = full size.",
        **fv,
    )
    flags.DEFINE_bool(
        "square_crop", True,
        "Center-crop frames to a square of the short side before sending: same prediction when "
        "--resize_short_side matches the server, fixed request shape for server-side batching.",
        **fv,
    )
    flags.DEFINE_float("timeout", 60.0, "Request timeout in seconds.", **fv)
    flags.DEFINE_integer(
        "max_frames", None,
        "serve_examples only: send the first N frames instead of the whole video. N must cover "
        "the model's window (sampling_rate * num_frames * fps / target_fps, 64 at 30 fps for "
        "8x8).", **fv,
    )
    flags.DEFINE_string(
        "boxes", None,
        BOXES_CSV_HELP + " Sends frames + boxes to a detector's serving_default (full frames at "
        "--resize_short_side; --square_crop, --clip_position and --max_frames do not apply).", **fv,
    )
    flags.mark_flag_as_required("video", flag_values=flag_values)


def main(argv, flag_values=flags.FLAGS):
    del argv
    f = flag_values
    if f.boxes:
        return _main_detect(f)
    try:
        outputs = classify(
            f.video, f.server, f.rest, f.model_name, f.signature_name, f.num_frames,
            f.sampling_rate, f.target_fps, f.resize_short_side, f.clip_position, f.timeout,
            f.max_frames, f.square_crop,
        )
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{f.video} via {'REST' if f.rest else 'gRPC'} {f.server} ({f.signature_name}):")
    print(format_top_k(outputs))
    return 0


def _main_detect(f) -> int:
    try:
        if f.signature_name != "serving_default":
            raise ValueError("--boxes needs --signature_name=serving_default (a detector has no "
                             f"other). Received: --signature_name={f.signature_name}")
        results = detect(
            f.video, f.boxes, f.server, f.rest, f.model_name, f.num_frames, f.sampling_rate,
            f.target_fps, f.resize_short_side, f.timeout,
        )
    except (RuntimeError, ValueError, OSError) as e:
        # Server assertions carry a graph-node trailer on further lines: one line for the user.
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(f"{f.video} via {'REST' if f.rest else 'gRPC'} {f.server} (detection, {f.boxes}):")
    print(format_detections(results))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
