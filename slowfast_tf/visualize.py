"""Drawing for `slowfast_tf.predict`: top-k labels with probability bars on frames, and a timeline.

`write_overlay_video` and `write_timeline` take a `predict.VideoPrediction`.

numpy and PIL only (matplotlib is not a dependency); every function returns or consumes uint8 RGB
arrays, and files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slowfast_tf.utils import fileio

# Colour-blind-safe categorical palette (Okabe-Ito), cycled for the timeline's classes.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (153, 153, 153))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def ranking(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Class ids of the `k` largest probabilities, largest first (ties: lower id first)."""
    return np.argsort(-np.asarray(probabilities), kind="stable")[:k]


def draw_top_k(
    frame: np.ndarray, entries: Sequence[tuple[str, float]], caption: str = ""
) -> np.ndarray:
    """Draws a panel with one line per ``(label, probability)`` over the top-left of `frame`.

    Each line has a bar whose length is the probability (full panel width = 1.0) behind
    ``label  81%``; `caption` (e.g. the window's time span) goes in a strip at the bottom.

    Returns:
        uint8 RGB ``[H, W, 3]``, a new array (the input is not modified).
    """
    image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGBA")
    height, width = frame.shape[:2]
    size = max(8, min(height, width) // 18)
    font = _font(size)
    line = size + max(2, size // 3)
    pad = max(2, size // 3)
    panel_w = max(16, int(width * 0.62))
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle([0, 0, panel_w + 2 * pad, pad * 2 + line * len(entries)], fill=(0, 0, 0, 150))
    for row, (label, probability) in enumerate(entries):
        y = pad + row * line
        p = float(np.clip(probability, 0.0, 1.0))
        colour = PALETTE[row % len(PALETTE)]
        draw.rectangle([pad, y, pad + max(1, int(round(p * panel_w))), y + line - 2],
                       fill=(*colour, 170))
        draw.text((pad + 2, y), f"{label}  {100 * p:.0f}%", fill=(255, 255, 255, 255), font=font)
    if caption:
        draw.rectangle([0, height - line - pad, width, height], fill=(0, 0, 0, 150))
        draw.text((pad, height - line - pad // 2), caption, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(image, overlay).convert("RGB"))


def draw_timeline(
    times: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[int],
    title: str = "",
    size: tuple[int, int] = (900, 420),
    x_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """A line plot of ``probabilities[:, c]`` over `times` (seconds) for each of `classes`.

    Args:
        times: float ``[W]``, the x positions (window centres).
        probabilities: float ``[W, C]``.
        labels: class names, indexed by class id.
        classes: class ids to plot (one colour each; legend on the right).
        title: drawn above the plot.
        size: ``(width, height)`` of the image.
        x_range: ``(t0, t1)`` seconds of the x axis (default: the range of `times`).

    Returns:
        uint8 RGB ``[height, width, 3]``.
    """
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font(13)
    left, right, top, bottom = 48, width - 200, 30, height - 36
    draw.text((left, 8), title, fill=(0, 0, 0), font=font)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    t0, t1 = x_range or (float(times.min()), float(times.max()))
    span = (t1 - t0) or 1.0

    def x_of(t):
        return left + (t - t0) / span * (right - left) if t1 > t0 else (left + right) / 2

    def y_of(p):
        return bottom - float(p) * (bottom - top)

    for p in (0.0, 0.25, 0.5, 0.75, 1.0):  # y grid and ticks
        y = y_of(p)
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((8, y - 7), f"{p:.2f}", fill=(0, 0, 0), font=font)
    for t in np.linspace(t0, t1, 6 if t1 > t0 else 1):  # x ticks in seconds
        x = x_of(t)
        draw.line([x, bottom, x, bottom + 4], fill=(0, 0, 0))
        draw.text((x - 12, bottom + 6), f"{t:.1f}s", fill=(0, 0, 0), font=font)
    for row, c in enumerate(classes):
        colour = PALETTE[row % len(PALETTE)]
        points = [(x_of(t), y_of(p)) for t, p in zip(times, probabilities[:, c])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        y = top + 4 + row * 18
        draw.rectangle([right + 12, y + 3, right + 26, y + 13], fill=colour)
        draw.text((right + 32, y), str(labels[c])[:22], fill=(0, 0, 0), font=font)
    return np.asarray(image)


def save_png(path: str, image: np.ndarray) -> None:
    """Writes a uint8 RGB array as a PNG (atomically)."""
    with fileio.atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def write_overlay_video(path: str, prediction, labels: Sequence[str], k: int,
                        short_side: int) -> int:
    """Writes the video of a `predict.VideoPrediction` (at its fps, short side `short_side`, by
    extension ``.mp4`` or ``.gif``) with the top-k of the window centred nearest to each frame
    drawn on it; returns the frame count."""
    from slowfast_tf import video_io

    centers = prediction.centers

    def frames():
        for item in video_io.iter_frames(prediction.path, target_fps=prediction.fps,
                                         short_side=short_side):
            w = int(np.argmin(np.abs(centers - item.time)))
            p = prediction.probabilities[w]
            entries = [(labels[c], float(p[c])) for c in ranking(p, k)]
            caption = (f"{item.time:5.2f}s  window {prediction.starts[w]:.2f}-"
                       f"{prediction.ends[w]:.2f}s")
            yield draw_top_k(item.rgb(), entries, caption)

    return video_io.write_video(path, frames(), prediction.fps)


def write_timeline(path: str, prediction, labels: Sequence[str], k: int) -> None:
    """PNG of a `predict.VideoPrediction`'s window probabilities over time for its top-k classes."""
    classes = [int(c) for c in ranking(prediction.video_probabilities, k)]
    image = draw_timeline(
        prediction.centers, prediction.probabilities, labels, classes,
        title=f"{os.path.basename(prediction.path)}: class probability per window (centre time)",
        x_range=(0.0, prediction.duration),
    )
    save_png(path, image)


def draw_boxes(
    frame: np.ndarray, boxes: np.ndarray, entries: Sequence[Sequence[tuple[str, float]]],
    caption: str = "",
) -> np.ndarray:
    """Draws person boxes, each with its ``(label, probability)`` lines, on `frame`.

    Args:
        frame: uint8 RGB ``[H, W, 3]``.
        boxes: float ``[N, 4]`` normalised ``(x1, y1, x2, y2)``.
        entries: per box, the lines written at its top-left corner (``label  81%``).
        caption: drawn in a strip at the bottom (e.g. the keyframe time).

    Returns:
        uint8 RGB ``[H, W, 3]``, a new array.
    """
    image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGBA")
    height, width = frame.shape[:2]
    size = max(8, min(height, width) // 24)
    font = _font(size)
    line = size + max(2, size // 3)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for row, (box, lines) in enumerate(zip(np.asarray(boxes, np.float64), entries)):
        colour = PALETTE[row % len(PALETTE)]
        x1, y1, x2, y2 = box * [width - 1, height - 1, width - 1, height - 1]
        draw.rectangle([x1, y1, x2, y2], outline=(*colour, 255), width=max(1, size // 6))
        for i, (label, probability) in enumerate(lines):
            y = y1 + 2 + i * line
            text = f"{label} {100 * float(np.clip(probability, 0, 1)):.0f}%"
            draw.rectangle([x1 + 1, y, x1 + 2 + draw.textlength(text, font=font), y + line - 1],
                           fill=(0, 0, 0, 150))
            draw.text((x1 + 2, y), text, fill=(*colour, 255), font=font)
    if caption:
        pad = max(2, size // 3)
        draw.rectangle([0, height - line - pad, width, height], fill=(0, 0, 0, 150))
        draw.text((pad, height - line - pad // 2), caption, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(image, overlay).convert("RGB"))


def write_box_video(path: str, prediction, labels: Sequence[str], k: int,
                    short_side: int) -> int:
    """Writes the frames around each keyframe of a `predict_detection.DetectionPrediction`.

    The frames written are those inside some keyframe's clip (native frames ``first..last`` of
    its indices), at the source rate and short side `short_side`, each showing the boxes and
    top-k actions of the keyframe whose clip centre is nearest; returns the frame count.
    """
    from slowfast_tf import video_io

    spans = np.array([(kf.first_frame, kf.last_frame) for kf in prediction.keyframes])
    centres = np.array([kf.frame for kf in prediction.keyframes])
    end = int(spans[:, 1].max())

    def frames():
        for item in video_io.iter_frames(prediction.path, short_side=short_side):
            if item.index > end:
                break
            inside = np.flatnonzero((spans[:, 0] <= item.index) & (item.index <= spans[:, 1]))
            if not len(inside):
                continue
            kf = prediction.keyframes[inside[np.argmin(np.abs(centres[inside] - item.index))]]
            entries = [[(labels[c], float(p[c])) for c in ranking(p, k)]
                       for p in kf.probabilities]
            yield draw_boxes(item.rgb(), kf.boxes, entries,
                             f"{item.time:5.2f}s  keyframe {kf.time:.2f}s")

    return video_io.write_video(path, frames(), prediction.fps)
