"""Video decoding and resizing with PyAV: the one implementation every caller uses.

TFRecord conversion (`tfrecords_tools.encode`), the serving client, `slowfast_tf.predict` and
`benchmarks/bench_input.py` all read videos through `iter_frames` / `read_frames`, so a model sees
the same pixels at training and at serving time:

* **One resize rule** (`output_size` + `resize`): the short side becomes ``short_side`` and the long
  side keeps the aspect ratio, rounded to an even number (4:2:0 chroma needs even sizes); FFmpeg's
  ``AREA`` filter (a box average: no aliasing when shrinking 1080p to 256) runs in the decoder's own
  pixel format, before any conversion to RGB or JPEG. Records used this rule already; the client
  used bilinear with ``round()`` (e.g. 341 instead of 342 pixels for 4:3 at 256), a train/serve
  skew.
* **One time base**: frames are resampled to a constant rate by sample-and-hold on the decoded
  timestamps (output frame ``j`` at time ``j / fps`` is the last source frame shown at that time),
  so a variable-rate phone video becomes a regular clip and 60 -> 30 fps keeps every other frame.
* **Bounded work** (`DecodeLimits`): a tiny file with a 10,000 s timestamp gap would expand to
  300,000 held frames; such videos raise `VideoRefused` while decoding, before the work is spent.

Every failure is a `VideoError` (a `ValueError`) with a one-line message naming the file.

Writing (`write_mp4`, `write_gif`, `write_video`) is here too: the synthetic data set and
`predict --visualize` use it.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import itertools
import math
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

_EPS = 1e-6  # seconds; absorbs float error when comparing output times with frame timestamps
RESIZE_INTERPOLATION = "AREA"


class VideoError(ValueError):
    """A video that cannot be read: missing, not a video, no video stream, no decodable frame."""


class VideoRefused(VideoError):
    """A video over a bound of `DecodeLimits` (duration, output frames, timestamp gap).

    Its message is the reason alone; the caller names the file."""


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Resource bounds of one decode; 0 disables a bound.

    Args:
        max_duration: float, refuse a video whose timeline (after ``max_seconds`` truncation)
            is longer than this many seconds. Default 1800 (30 minutes).
        max_frames: int, refuse a video that would give more output frames. Default 54000
            (30 minutes at 30 fps).
        max_gap: float, refuse a jump of more than this many seconds between consecutive frame
            timestamps, or a frame rate that holds one frame that long. Default 10.
    """

    max_duration: float = 1800.0
    max_frames: int = 54_000
    max_gap: float = 10.0


NO_LIMITS = DecodeLimits(0.0, 0, 0.0)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Container metadata of a video (`probe`); ``num_frames``/``duration`` are 0 when unknown."""

    path: str
    fps: float
    num_frames: int
    duration: float
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class Frame:
    """One output frame of `iter_frames`.

    ``frame`` is the resized ``av.VideoFrame`` in the decoder's pixel format; a held frame
    repeated by resampling is the *same object* as before (callers may cache per object).
    ``source_index`` counts decoded source frames from 1; ``fps`` is the output rate and
    ``source_fps`` the container's average rate (0 when unknown).
    """

    index: int
    time: float
    frame: object
    source_index: int
    fps: float
    source_fps: float

    def rgb(self) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB."""
        return self.frame.to_ndarray(format="rgb24")


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(h, w)`` with the short side `short_side` and the long side rounded to an even number.

    ``short_side <= 0`` keeps the source size (rounded down to even).
    """
    if short_side <= 0:
        return max(2, height - height % 2), max(2, width - width % 2)
    if height <= width:
        return short_side, max(2, int(round(width * short_side / height / 2.0)) * 2)
    return max(2, int(round(height * short_side / width / 2.0)) * 2), short_side


def resize(frame, short_side: int):
    """Resizes an ``av.VideoFrame`` by the one rule (`output_size`, AREA, same pixel format)."""
    height, width = output_size(frame.height, frame.width, short_side)
    if (height, width) == (frame.height, frame.width):
        return frame
    return frame.reformat(width=width, height=height, interpolation=RESIZE_INTERPOLATION)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextmanager
def open_video(path: str):
    """Opens `path` and yields ``(container, video_stream)``; failures become `VideoError`."""
    import av

    if "://" not in path and not os.path.isfile(path):  # URLs go to FFmpeg as they are
        raise VideoError(f"cannot read video {path}: no such file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot read video {path}: {_describe(e)}") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"cannot read video {path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def probe(path: str) -> VideoInfo:
    """Container metadata without decoding (frame count and duration may be 0: unknown)."""
    with open_video(path) as (container, stream):
        fps = _stream_fps(stream)
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        if not duration and container.duration:
            duration = container.duration / 1_000_000  # microseconds (AV_TIME_BASE)
        num_frames = stream.frames or (int(round(duration * fps)) if fps else 0)
        context = stream.codec_context
        return VideoInfo(path, fps, int(num_frames), duration, context.height, context.width)


class _Bounds:
    """The `DecodeLimits` of one decode; each check raises `VideoRefused`. The messages name the
    converter's flags (`python -m tfrecords_tools convert`), the main user of the limits."""

    def __init__(self, path: str, limits: DecodeLimits, out_fps: float):
        self.path, self.limits, self.out_fps = path, limits, out_fps
        self.previous = None

    def refuse(self, reason: str):
        # No path in the message: callers list the file beside the reason (failures.tsv).
        raise VideoRefused(reason)

    def check_time(self, t: float, index: int) -> None:
        lim = self.limits
        if lim.max_gap > 0 and self.previous is not None and t - self.previous > lim.max_gap:
            self.refuse(
                f"timestamp gap of {t - self.previous:.1f} s before source frame {index} is over "
                f"the limit of {lim.max_gap:g} s (--max_gap_seconds)"
            )
        if lim.max_duration > 0 and t > lim.max_duration:
            self.refuse(
                f"longer than the limit of {lim.max_duration:g} s (--max_duration_seconds; "
                "--max_seconds keeps only the start)"
            )
        self.previous = t if self.previous is None else max(t, self.previous)

    def check_hold(self, frame_period: float, source_fps: float) -> None:
        if self.limits.max_gap > 0 and frame_period > self.limits.max_gap:
            self.refuse(
                f"frame rate {source_fps:.3g} fps holds the last frame for {frame_period:.1f} s, "
                f"over the limit of {self.limits.max_gap:g} s (--max_gap_seconds)"
            )

    def check_frames(self, count: int) -> None:
        if self.limits.max_frames > 0 and count >= self.limits.max_frames:
            self.refuse(
                f"more than {self.limits.max_frames} output frames at {self.out_fps:g} fps "
                "(--max_frames)"
            )


def iter_frames(
    path: str,
    *,
    target_fps: float = 0.0,
    short_side: int = 0,
    max_seconds: float = 0.0,
    start_seconds: float = 0.0,
    limits: DecodeLimits = DecodeLimits(),
) -> Iterator[Frame]:
    """Decodes `path`, resamples to a constant rate and resizes; yields `Frame`s in order.

    Args:
        path: str, video file readable by FFmpeg.
        target_fps: float, output rate; <= 0 = the source's average rate.
        short_side: int, resize so the short side has this many pixels (0 = source size).
        max_seconds: float, stop at this time (0 = the whole video).
        start_seconds: float, seek to the keyframe before this time and start output there
            (times then count from the stream start rather than from the first frame).
        limits: DecodeLimits.

    Yields:
        `Frame` with ``index`` ``j`` and ``time`` ``j / fps``. Source frames that no output time
        uses are never resized.

    Raises:
        VideoError: unreadable file, no video stream, no decodable frame, unknown frame rate.
        VideoRefused: over a bound of `limits` (checked while decoding).
    """
    import av

    with open_video(path) as (container, stream):
        source_fps = _stream_fps(stream)
        out_fps = target_fps if target_fps > 0 else source_fps
        if out_fps <= 0:
            raise VideoError(f"cannot read video {path}: unknown frame rate")
        frame_period = 1.0 / source_fps if source_fps > 0 else 1.0 / out_fps
        bounds = _Bounds(path, limits, out_fps)
        origin = None
        if start_seconds > 0:
            base = stream.start_time or 0
            container.seek(base + int(start_seconds / stream.time_base), stream=stream,
                           backward=True, any_frame=False)
            origin = float(base * stream.time_base)
        first = math.ceil(start_seconds * out_fps - _EPS)
        state = _Resampler(out_fps, source_fps, short_side, bounds, first)
        count, last_time = 0, None
        try:
            for count, frame in enumerate(container.decode(stream), 1):
                t = frame.time if frame.time is not None else (count - 1) * frame_period
                if origin is None:
                    origin = t
                t -= origin
                if max_seconds > 0 and t >= max_seconds - _EPS:
                    break
                bounds.check_time(t, count)
                yield from state.emit_until(t)
                state.hold(frame, count)
                last_time = t
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot read video {path}: {_describe(e)}") from e
        if state.held is None:
            raise VideoError(f"cannot read video {path}: no decodable video frame")
        # The last frame stays on screen for one source frame period.
        end = last_time + frame_period
        if max_seconds > 0:
            end = min(end, max_seconds)
        else:
            bounds.check_hold(frame_period, source_fps)
        yield from state.emit_until(end)
        if state.emitted == 0:  # a single very short frame still gives one output frame
            yield from state.emit_until(math.inf, once=True)


class _Resampler:
    """Sample-and-hold state: the frame on screen and the next output index."""

    def __init__(self, fps, source_fps, short_side, bounds: _Bounds, first_index: int):
        self.fps, self.source_fps, self.short_side, self.bounds = fps, source_fps, short_side, bounds
        self.next_index = max(0, first_index)
        self.held = None  # (source frame, resized frame or None, source index)
        self.emitted = 0

    def hold(self, frame, source_index: int) -> None:
        self.held = (frame, None, source_index)

    def emit_until(self, t_next: float, once: bool = False) -> Iterator[Frame]:
        """Yields the held frame for every output time before `t_next`."""
        if self.held is None:
            return
        while self.next_index / self.fps < t_next - _EPS:
            self.bounds.check_frames(self.emitted)
            frame, resized, source_index = self.held
            if resized is None:
                resized = resize(frame, self.short_side)
                self.held = (frame, resized, source_index)
            yield Frame(self.next_index, self.next_index / self.fps, resized, source_index,
                        self.fps, self.source_fps)
            self.next_index += 1
            self.emitted += 1
            if once:
                return


def read_frames(
    path: str,
    *,
    target_fps: float = 0.0,
    short_side: int = 0,
    max_frames: int | None = None,
    limits: DecodeLimits = DecodeLimits(),
    progress: bool = False,
) -> tuple[np.ndarray, float]:
    """Decodes a whole video (or its first `max_frames` frames) to RGB.

    Args:
        path, target_fps, short_side, limits: as in `iter_frames`.
        max_frames: stop after this many output frames (None: the whole video).
        progress: show a tqdm bar on stderr (when it is a terminal).

    Returns:
        ``(frames uint8 [N, H, W, 3], fps)``.
    """
    if short_side < 0:
        raise ValueError(f"`short_side` must be >= 0. Received: short_side={short_side}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"`max_frames` must be >= 1 or None. Received: max_frames={max_frames}")
    from tqdm import tqdm

    frames, fps = [], target_fps
    stream = iter_frames(path, target_fps=target_fps, short_side=short_side, limits=limits)
    bar = tqdm(stream, total=max_frames, desc="decode", unit="frame", leave=False,
               disable=not (progress and sys.stderr.isatty()))
    for item in bar:
        fps = item.fps
        frames.append(item.rgb())
        if max_frames is not None and len(frames) >= max_frames:
            break
    bar.close()
    return np.stack(frames), float(fps)


# === Writing ===


def pick_codec() -> str:
    """First of libx264 / mpeg4 this PyAV build can encode."""
    import av

    for codec in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(codec, "w")
            return codec
        except Exception:  # noqa: BLE001 - PyAV raises several types for a missing encoder
            continue
    raise RuntimeError("PyAV has neither libx264 nor mpeg4 encoders; cannot write MP4 files.")


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB (H, W even) -> ``[H * 3 // 2, W]`` planar YUV 4:2:0, BT.601
    limited range, in exact integer arithmetic (the layout ``VideoFrame.from_ndarray`` takes).

    Chroma averages horizontal pixel pairs and filters rows with taps (1, 3, 3, 1) / 8 (edge
    rows repeated), as FFmpeg's swscale does, but the result depends on nothing but the input:
    swscale itself picks SIMD paths and slice threads at run time.
    """
    height, width = frame.shape[:2]
    rgb = frame.astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = (65481 * r + 128553 * g + 24966 * b + 127500) // 255000 + 16
    pairs = rgb[:, 0::2] + rgb[:, 1::2]  # [H, W / 2, 3], 2x the mean
    padded = np.concatenate([pairs[:1], pairs, pairs[-1:]], axis=0)
    sums = padded[0:-3:2] + 3 * padded[1:-2:2] + 3 * padded[2:-1:2] + padded[3::2]  # 16x the mean
    rs, gs, bs = sums[..., 0], sums[..., 1], sums[..., 2]
    scale = 16 * 255000
    u = (-37797 * rs - 74203 * gs + 112000 * bs + scale // 2) // scale + 128
    v = (112000 * rs - 93786 * gs - 18214 * bs + scale // 2) // scale + 128
    planes = [np.clip(p, 0, 255).astype(np.uint8).ravel() for p in (y, u, v)]
    return np.concatenate(planes).reshape(height * 3 // 2, width)


def write_mp4(path: str, frames: Iterable[np.ndarray], fps: float = 30,
              codec: str | None = None) -> int:
    """Encodes uint8 ``[H, W, 3]`` RGB frames (H, W even; an array ``[T, H, W, 3]`` or any
    iterable, consumed one frame at a time) to an MP4 file with PyAV; returns the frame count.

    Reproducible: the frames reach the encoder already in its pixel format (see
    `rgb_to_yuv420p`), so FFmpeg does no conversion, and the encoder runs on one thread
    (limited to AVX2 code on AVX-512 CPUs, see `_x264_cpu_options`).
    Written to a temporary file in the same folder and renamed when complete.
    """
    import av

    from slowfast_tf.utils import fileio

    codec = codec or pick_codec()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"No frames to write. Received: path={path!r}")
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"MP4 frames need even sides. Received: shape={first.shape}")
    count = 0
    with fileio.atomic_path(path) as tmp, av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "veryfast", "threads": "1",
                              **_x264_cpu_options()}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for frame in itertools.chain([first], frames):
            yuv = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


@functools.lru_cache(maxsize=1)
def _x264_cpu_options() -> dict:
    """libx264 options that keep its output reproducible on this CPU.

    On an AVX-512 machine libx264's AVX-512 code gave different bytes for the same frames in about
    one run out of five (fresh processes, one thread); limited to AVX2 it gave the same bytes in
    every run. Other CPUs keep libx264's own choice.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return {}
    if "avx512f" in flags and "avx2" in flags:
        return {"x264-params": "asm=avx2"}
    return {}


def write_gif(path: str, frames: Iterable[np.ndarray], fps: float) -> int:
    """Writes RGB frames as a looping GIF with PIL (atomically); returns the frame count."""
    from PIL import Image

    from slowfast_tf.utils import fileio

    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    if not images:
        raise ValueError(f"No frames to write. Received: path={path!r}")
    with fileio.atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)
    return len(images)


def write_video(path: str, frames: Iterable[np.ndarray], fps: float) -> int:
    """`write_mp4` or `write_gif` by the file extension (``.mp4`` / ``.gif``)."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".mp4":
        return write_mp4(path, frames, fps)
    if extension == ".gif":
        return write_gif(path, frames, fps)
    raise ValueError(f"The video file must end in .mp4 or .gif. Received: {path!r}")
