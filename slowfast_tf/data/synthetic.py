"""Synthetic video dataset where the fast pathway matters (the README main job's default data).

    python -m slowfast_tf.data.synthetic --output_dir /tmp/synth --num_train 40 --num_val 10 --size 64

writes real MP4 files (PyAV; H.264 when available, else MPEG-4 Part 2) under ``OUT/videos/`` and
PySlowFast list files ``OUT/{train,val,test}.csv`` (``path label``, paths relative to OUT, so
``--path_prefix OUT`` in the converter) plus ``OUT/classes.txt`` and ``OUT/synthetic.json``.
The rendered frames are a pure function of ``--seed`` (numpy only). The MP4 bytes are
reproducible for a seed with the same PyAV/FFmpeg build: frames are converted to YUV 4:2:0 here
in integer arithmetic (not by FFmpeg's multi-threaded swscale) and encoded single-threaded.
Another FFmpeg/x264 build may write different (equally valid) bytes. Every file is written to a
temporary name and renamed, so an interrupted run leaves no partial file.

Six classes; one object (random colour, disc or square, random position) on a random textured
background. Appearance says nothing about the class; only the temporal pattern does:

==============  =================================================================================
flicker_low     brightness oscillates at 4.6-7.5 Hz
flicker_high    brightness oscillates at 12-14.9 Hz
dart_up         the object moves up at 4.5-10.5 px/frame (at size 64), wrapping around the frame
dart_down       the same, moving down
grow            the radius grows steadily over the video
shrink          the radius shrinks steadily
==============  =================================================================================

Why Slow-only fails on the first four (numbers for the ``synthetic_slowfast`` data preset: 16
frames at rate 2 from 30 fps video, alpha 4): the fast pathway samples every 2-3 frames (mostly
2: 15 Hz), the slow pathway / a Slow-only model every 10-11 frames (~2.9 Hz). Each flicker band
is 2.9 Hz wide, and the dart speeds span ~62 px of displacement per slow step, so between two slow
frames the flicker phase and the dart position (mod the frame size) advance by an amount spread
over a full cycle: both classes of a pair look the same at the slow stride. At the fast stride
they separate: the low flicker advances 0.31-0.5 cycles per step (near-alternation), the high one
aliases to 0.0-0.2 cycles per step (slow drift), and a dart moves 9-22 px per step (< half the
frame, so the direction is unambiguous). ``grow``/``shrink`` are solvable at either stride, so
both models beat chance, and SlowFast should approach 100% while Slow-only stays near 4/6.
``synthetic_test.py`` checks both aliasing claims on rendered frames.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import flags
from tqdm import tqdm

from slowfast_tf.utils import cli_flags, fileio

# The MP4 writer lives with the decoder; re-exported here, where the data set uses it.
from slowfast_tf.video_io import pick_codec, rgb_to_yuv420p, write_mp4  # noqa: F401

CLASSES = ("flicker_low", "flicker_high", "dart_up", "dart_down", "grow", "shrink")
SPLITS = ("train", "val", "test")
_FLICKER_HZ = {"flicker_low": (4.6, 7.5), "flicker_high": (12.0, 14.9)}
_DART_PX_PER_FRAME_AT_64 = (4.5, 10.5)


def render_video(
    label: int, rng: np.random.Generator, size: int = 64, num_frames: int = 60, fps: float = 30.0
) -> np.ndarray:
    """Renders one video of class `label`.

    Args:
        label: int, index into `CLASSES`.
        rng: numpy Generator (all randomness of this video).
        size: int, frame side in pixels.
        num_frames: int, frames to render.
        fps: float, frame rate the temporal bands refer to.

    Returns:
        uint8 ``[num_frames, size, size, 3]``.
    """
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in [0, {len(CLASSES)}). Received: label={label}")
    name = CLASSES[label]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: dark random colour, a random linear gradient and static noise (texture the
    # network must learn to ignore; static so it does not compete with the temporal signal).
    base = rng.uniform(0.05, 0.35, 3)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy) / size * rng.uniform(0.05, 0.2)
    background = base[None, None, :] + gradient[..., None]
    background = background + rng.normal(0, 0.03, (size, size, 3))
    colour = rng.uniform(0.55, 1.0, 3)
    square = rng.random() < 0.5
    cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
    radius = rng.uniform(0.12, 0.2) * size
    t = np.arange(num_frames, dtype=np.float32) / fps

    amplitude = np.ones(num_frames, np.float32)
    centres_y = np.full(num_frames, cy, np.float32)
    radii = np.full(num_frames, radius, np.float32)
    if name in _FLICKER_HZ:
        freq = rng.uniform(*_FLICKER_HZ[name])
        amplitude = 0.5 + 0.5 * np.cos(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    elif name in ("dart_up", "dart_down"):
        speed = rng.uniform(*_DART_PX_PER_FRAME_AT_64) * size / 64.0
        radius = rng.uniform(0.11, 0.15) * size
        radii[:] = radius
        sign = -1.0 if name == "dart_up" else 1.0
        centres_y = (cy + sign * speed * np.arange(num_frames)) % size
    else:  # grow / shrink
        small, large = rng.uniform(0.05, 0.09) * size, rng.uniform(0.34, 0.42) * size
        ramp = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)
        radii = small + (large - small) * (ramp if name == "grow" else 1.0 - ramp)

    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        # Distances on a torus so a wrapping dart is drawn across the border.
        dy = (yy - centres_y[i] + size / 2) % size - size / 2
        dx = xx - cx
        dist = np.maximum(np.abs(dy), np.abs(dx)) if square else np.sqrt(dy**2 + dx**2)
        mask = np.clip(radii[i] - dist + 0.5, 0.0, 1.0)[..., None] * amplitude[i]
        image = background * (1 - mask) + colour[None, None, :] * mask
        frames[i] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


def generate(
    out: str,
    num_per_class: dict[str, int] | None = None,
    size: int = 64,
    seconds: float = 2.0,
    fps: int = 30,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    codec: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes the dataset and returns its description (also saved as ``synthetic.json``).

    Args:
        out: str, output directory.
        num_per_class: dict split -> videos per class (default train 40, val 10, test 10).
        size: int, frame side (even; 64 or 96 are good CPU sizes).
        seconds: float, duration of every video.
        fps: int, frame rate.
        seed: int, seed of all randomness.
        classes: subset of `CLASSES` to generate (labels index this subset).
        codec: ``"libx264"``, ``"mpeg4"`` or None for the first available.
        progress: bool, show a tqdm bar.

    Returns:
        dict with ``classes``, ``codec``, ``counts`` and the settings.
    """
    num_per_class = num_per_class or {"train": 40, "val": 10, "test": 10}
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16. Received: size={size}")
    num_frames = int(round(seconds * fps))
    if num_frames < 1:
        raise ValueError(f"seconds * fps must give >= 1 frame. Received: seconds={seconds}, fps={fps}")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {CLASSES}. Received: {classes}")
    unknown_splits = [s for s in num_per_class if s not in SPLITS]
    if unknown_splits:
        raise ValueError(f"splits must be in {SPLITS}. Received: {sorted(num_per_class)}")
    codec = codec or pick_codec()
    os.makedirs(out, exist_ok=True)
    jobs = [
        (split, label, i)
        for split, count in num_per_class.items()
        for label in range(len(classes))
        for i in range(count)
    ]
    lists: dict[str, list[str]] = {split: [] for split in num_per_class}
    for split, label, i in tqdm(jobs, desc="synthetic videos", disable=not progress):
        name = classes[label]
        rel = os.path.join("videos", split, name, f"{name}_{i:04d}.mp4")
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Independent stream per video: regenerating one split never shifts another.
        rng = np.random.default_rng([seed, SPLITS.index(split), CLASSES.index(name), i])
        write_mp4(path, render_video(CLASSES.index(name), rng, size, num_frames, fps), fps, codec)
        lists[split].append(f"{rel} {label}")
    for split, lines in lists.items():
        fileio.atomic_write_text(os.path.join(out, f"{split}.csv"), "\n".join(lines) + "\n")
    fileio.atomic_write_text(os.path.join(out, "classes.txt"), "\n".join(classes) + "\n")
    info = {
        "classes": list(classes), "codec": codec, "size": size, "fps": fps,
        "num_frames": num_frames, "seed": seed,
        "counts": {split: len(lines) for split, lines in lists.items()},
    }
    fileio.atomic_write_text(os.path.join(out, "synthetic.json"), json.dumps(info, indent=2))
    return info


def define_flags(fv: flags.FlagValues) -> None:
    f = {"flag_values": fv}
    flags.DEFINE_string("output_dir", None, "Output directory.", **f)
    flags.DEFINE_integer("num_train", 40, "Train videos per class.", **f)
    flags.DEFINE_integer("num_val", 10, "Val videos per class.", **f)
    flags.DEFINE_integer("num_test", 10, "Test videos per class.", **f)
    flags.DEFINE_integer("size", 64, "Frame side in pixels (even).", **f)
    flags.DEFINE_float("seconds", 2.0, "Duration of each video.", **f)
    flags.DEFINE_integer("fps", 30, "Frame rate.", **f)
    flags.DEFINE_integer("seed", 0, "Random seed.", **f)
    flags.DEFINE_string("codec", None, "libx264 or mpeg4 (default: first available).", **f)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def main(argv: Sequence[str] | None = None) -> dict:
    args, _ = cli_flags.parse(
        argv, define_flags, "python -m slowfast_tf.data.synthetic", {"--out": "--output_dir"},
        __doc__.split("\n\n")[0],
    )
    counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
    info = generate(args.output_dir, {k: v for k, v in counts.items() if v > 0}, args.size,
                    args.seconds, args.fps, args.seed, codec=args.codec)
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    sys.exit(cli_flags.run(main))
