"""Per-video work shared by the local and the Beam runner: decode, resample, resize, JPEG-encode.

`encode_video` is a pure function of (path, settings): it reads one file and returns the JPEG
frames, with no writes and no global state, so multiprocessing workers and Beam ``Map`` steps call
it the same way. Decoding, resampling and resizing are `slowfast_tf.video_io` (the same code the
serving client and `predict` run, so served frames match the records); it uses only PyAV and numpy
(no TensorFlow), so workers start fast. The JPEGs come from FFmpeg's MJPEG encoder, whose baseline
JFIF output ``tf.io.decode_jpeg`` reads.
"""

from __future__ import annotations

import fractions
import time
from dataclasses import asdict, dataclass

from slowfast_tf import video_io
from slowfast_tf.video_io import VideoRefused, output_size

__all__ = ["EncodeSettings", "EncodedVideo", "VideoRefused", "encode_video", "encode_item",
           "output_size"]


@dataclass(frozen=True)
class EncodeSettings:
    """How every video is re-encoded.

    Args:
        target_fps: float, output frame rate (sample-and-hold resampling); <= 0 keeps the
            source rate.
        short_side: int, resize so the short side has this many pixels (PySlowFast expects 256);
            0 keeps the source size. The long side keeps the aspect ratio, rounded to even
            (`video_io.output_size`).
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


@dataclass
class EncodedVideo:
    """Output of `encode_video`."""

    jpeg_frames: list
    fps: float
    height: int
    width: int
    source_fps: float
    source_frames: int


class _JpegEncoder:
    """MJPEG-encodes already resized frames (`video_io.resize`): only a pixel-format change here."""

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
        frame = frame.reformat(format="yuvj420p")
        # The encoder rejects the decoder's pts/time_base; give it its own increasing clock.
        frame.pts, frame.time_base = self.count, self.context.time_base
        self.count += 1
        packets = self.context.encode(frame)
        return b"".join(bytes(p) for p in packets)


def encode_video(path: str, settings: EncodeSettings) -> EncodedVideo:
    """Decodes and resamples `path` with `video_io.iter_frames` (one resize rule), JPEG-encodes.

    Resampling is sample-and-hold on the decoded timestamps: output frame ``j`` (time
    ``j / target_fps``) is the last source frame shown at that time, so 60 -> 30 fps keeps every
    other frame and 25 -> 30 fps repeats one frame in six; a repeated frame is encoded once.

    Args:
        path: str, video file.
        settings: EncodeSettings.

    Returns:
        EncodedVideo.

    Raises:
        VideoRefused: over ``max_duration``, ``max_frames`` or ``max_gap`` (checked while
            decoding, before the work or memory is spent).
        video_io.VideoError: unreadable file, no video stream or no decodable frame.
    """
    if settings.delay_per_video > 0:
        time.sleep(settings.delay_per_video)
    limits = video_io.DecodeLimits(settings.max_duration, settings.max_frames, settings.max_gap)
    frames = video_io.iter_frames(
        path, target_fps=settings.target_fps, short_side=settings.short_side,
        max_seconds=settings.max_seconds, limits=limits,
    )
    jpegs: list[bytes] = []
    encoder, item, previous, jpeg = None, None, None, b""
    for item in frames:
        if encoder is None:
            encoder = _JpegEncoder(item.frame.height, item.frame.width, settings.jpeg_qscale)
        if item.frame is not previous:
            previous, jpeg = item.frame, encoder(item.frame)
        jpegs.append(jpeg)
    # iter_frames yields at least one frame or raises.
    return EncodedVideo(jpegs, float(item.fps), encoder.height, encoder.width,
                        item.source_fps, item.source_index)


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
