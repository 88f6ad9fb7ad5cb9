"""Per-video work shared by the local and the Beam runner: decode, resample, resize, JPEG-encode.

`encode_video` is a pure function of (path, settings): it reads one file and returns the JPEG
frames, with no writes and no global state, so multiprocessing workers and Beam ``Map`` steps call
it the same way. It uses only PyAV and numpy (no TensorFlow), so workers start fast; the JPEGs come
from FFmpeg's MJPEG encoder, whose baseline JFIF output ``tf.io.decode_jpeg`` reads.
"""

from __future__ import annotations

import fractions
import time
from dataclasses import asdict, dataclass

_EPS = 1e-6  # seconds; absorbs float error when comparing output times with frame timestamps


@dataclass(frozen=True)
class EncodeSettings:
    """How every video is re-encoded.

    Args:
        target_fps: float, output frame rate (sample-and-hold resampling); <= 0 keeps the
            source rate.
        short_side: int, resize so the short side has this many pixels (PySlowFast expects 256);
            0 keeps the source size. The long side keeps the aspect ratio, rounded to even.
        jpeg_qscale: int, MJPEG quantiser scale 2 (best) .. 31 (``ffmpeg -q:v``); 3 is visually
            lossless at about a third of the size of PNG.
        max_seconds: float, keep at most this much video (0 = all).
        delay_per_video: float, sleep this long per video; only for interruption tests.
        max_duration: float, refuse a video whose timeline (after `max_seconds` truncation)
            is longer than this many seconds (0 = no limit). Default 1800 (30 minutes).
        max_frames: int, refuse a video that would give more output frames (0 = no limit).
            Default 54000 (30 minutes at 30 fps).
        max_gap: float, refuse a video with a jump of more than this many seconds between
            consecutive frame timestamps, or a frame rate that holds one frame that long
            (0 = no limit). Default 10. Sample-and-hold would repeat the frame across the gap:
            a 1 KB file with a 10,000 s gap would become 300,000 frames.

    Refused videos are failures like unreadable ones (listed with the reason), never truncated
    silently.
    """

    target_fps: float = 30.0
    short_side: int = 256
    jpeg_qscale: int = 3
    max_seconds: float = 0.0
    delay_per_video: float = 0.0
    max_duration: float = 1800.0
    max_frames: int = 54_000
    max_gap: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


class VideoRefused(ValueError):
    """A video over a resource bound of `EncodeSettings` (duration, frames, timestamp gap)."""


@dataclass
class EncodedVideo:
    """Output of `encode_video`."""

    jpeg_frames: list
    fps: float
    height: int
    width: int
    source_fps: float
    source_frames: int


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(h, w)`` with the short side `short_side` and the long side rounded to an even number."""
    if short_side <= 0:
        return height - height % 2, width - width % 2
    if height <= width:
        return short_side, max(2, int(round(width * short_side / height / 2.0)) * 2)
    return max(2, int(round(height * short_side / width / 2.0)) * 2), short_side


class _JpegEncoder:
    def __init__(self, height: int, width: int, qscale: int):
        import av

        self.height, self.width = height, width
        self.context = av.CodecContext.create("mjpeg", "w")
        self.context.width, self.context.height = width, height
        self.context.pix_fmt = "yuvj420p"
        self.context.time_base = fractions.Fraction(1, 30)
        self.context.options = {"qmin": str(qscale), "qmax": str(qscale)}
        self.context.open()
        self.count = 0

    def __call__(self, frame) -> bytes:
        frame = frame.reformat(width=self.width, height=self.height, format="yuvj420p",
                               interpolation="AREA")
        # The encoder rejects the decoder's pts/time_base; give it its own increasing clock.
        frame.pts, frame.time_base = self.count, self.context.time_base
        self.count += 1
        packets = self.context.encode(frame)
        return b"".join(bytes(p) for p in packets)


def encode_video(path: str, settings: EncodeSettings) -> EncodedVideo:
    """Decodes `path` with PyAV, resamples to ``settings.target_fps``, resizes, JPEG-encodes.

    Resampling is sample-and-hold on the decoded timestamps: output frame ``j`` (time
    ``j / target_fps``) is the last source frame shown at that time, so 60 -> 30 fps keeps every
    other frame and 25 -> 30 fps repeats one frame in six. Source frames that no output time
    uses are never resized or encoded.

    Args:
        path: str, video file.
        settings: EncodeSettings.

    Returns:
        EncodedVideo.

    Raises:
        VideoRefused: over ``max_duration``, ``max_frames`` or ``max_gap`` (checked while
            decoding, before the work or memory is spent).
        ValueError: the file has no video stream or no decodable frame.
        av.error.FFmpegError / OSError: the container or a packet is unreadable.
    """
    import av

    if settings.delay_per_video > 0:
        time.sleep(settings.delay_per_video)
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {path}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        source_fps = float(rate) if rate else 0.0
        out_fps = settings.target_fps if settings.target_fps > 0 else source_fps
        if out_fps <= 0:
            raise ValueError(f"unknown frame rate and no target_fps for {path}")
        frame_period = 1.0 / source_fps if source_fps > 0 else 1.0 / out_fps
        limits = _Limits(settings, out_fps)
        jpegs: list[bytes] = []
        encoder = None
        held = None  # (frame, jpeg or None): the frame currently on screen
        first_time = None
        count = 0
        for count, frame in enumerate(container.decode(stream), 1):
            t = frame.time if frame.time is not None else (count - 1) * frame_period
            if first_time is None:
                first_time = t
                height, width = output_size(frame.height, frame.width, settings.short_side)
                encoder = _JpegEncoder(height, width, settings.jpeg_qscale)
            t -= first_time
            if settings.max_seconds > 0 and t >= settings.max_seconds - _EPS:
                break
            limits.check_time(t, count)
            if held is not None:
                held = _emit_until(t, held, jpegs, out_fps, encoder, limits)
            held = (frame, None)
        if held is None:
            raise ValueError(f"no decodable video frame in {path}")
        last = held[0]
        last_time = last.time - first_time if last.time is not None else (count - 1) * frame_period
        # The last frame stays on screen for one source frame period.
        end = last_time + frame_period
        if settings.max_seconds > 0:
            end = min(end, settings.max_seconds)
        else:
            limits.check_hold(frame_period, source_fps)
        _emit_until(end, held, jpegs, out_fps, encoder, limits)
    if not jpegs:  # a single very short frame still gives one output frame
        jpegs.append(encoder(held[0]))
    return EncodedVideo(jpegs, float(out_fps), encoder.height, encoder.width, source_fps, count)


class _Limits:
    """The resource bounds of one `encode_video` call; each check raises `VideoRefused`."""

    def __init__(self, settings: EncodeSettings, out_fps: float):
        self.settings, self.out_fps = settings, out_fps
        self.previous = None

    def check_time(self, t: float, index: int) -> None:
        s = self.settings
        if s.max_gap > 0 and self.previous is not None and t - self.previous > s.max_gap:
            raise VideoRefused(
                f"timestamp gap of {t - self.previous:.1f} s before source frame {index} is over "
                f"the limit of {s.max_gap:g} s (--max_gap_seconds)"
            )
        if s.max_duration > 0 and t > s.max_duration:
            raise VideoRefused(
                f"longer than the limit of {s.max_duration:g} s (--max_duration_seconds; "
                "--max_seconds keeps only the start)"
            )
        self.previous = t if self.previous is None else max(t, self.previous)

    def check_hold(self, frame_period: float, source_fps: float) -> None:
        if self.settings.max_gap > 0 and frame_period > self.settings.max_gap:
            raise VideoRefused(
                f"frame rate {source_fps:.3g} fps holds the last frame for {frame_period:.1f} s, "
                f"over the limit of {self.settings.max_gap:g} s (--max_gap_seconds)"
            )

    def check_frames(self, count: int) -> None:
        if self.settings.max_frames > 0 and count >= self.settings.max_frames:
            raise VideoRefused(
                f"more than {self.settings.max_frames} output frames at {self.out_fps:g} fps "
                "(--max_frames)"
            )


def _emit_until(t_next: float, held, jpegs: list, out_fps: float, encoder, limits=None) -> tuple:
    """Appends the held frame for every output time before `t_next`; returns the updated hold."""
    frame, jpeg = held
    while len(jpegs) / out_fps < t_next - _EPS:
        if limits is not None:
            limits.check_frames(len(jpegs))
        if jpeg is None:
            jpeg = encoder(frame)
        jpegs.append(jpeg)
    return frame, jpeg


def encode_item(item: dict, settings: EncodeSettings) -> dict:
    """Runner-facing wrapper: never raises, returns ``{"ok": True, "video": EncodedVideo, ...}``
    or ``{"ok": False, "reason": "..."}`` together with the input item fields."""
    result = dict(item)
    if item.get("error"):
        result.update(ok=False, reason=item["error"])
        return result
    try:
        result.update(ok=True, video=encode_video(item["path"], settings))
    except Exception as e:  # noqa: BLE001 - any decoder failure just marks the video as failed
        result.update(ok=False, reason=f"{type(e).__name__}: {e}")
    return result
