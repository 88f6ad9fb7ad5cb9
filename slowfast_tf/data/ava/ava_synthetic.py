"""Deterministic synthetic AVA-like detection set (same files as the real AVA layout).

    python -m slowfast_tf.data.ava.ava_synthetic --output_dir /tmp/ava_synth --num_train 6 --num_val 2

writes ``OUT/videos/{video_id}.mp4`` (frame 0 at video time 900 s, like PySlowFast's cuts, so
convert with ``--time_offset 900``), ``OUT/{split}.csv`` (ground truth
``video_id,sec,x1,y1,x2,y2,action_id,person_id``), ``OUT/{split}_boxes.csv`` (detector boxes: the
ground-truth boxes jittered, plus one false box per keyframe, empty label, with scores),
``OUT/{split}_exclusions.csv`` (the first keyframe of the first video), ``OUT/label_map.pbtxt``
(the evaluated subset, ids 1-5, like AVA's 60 of 80), ``OUT/label_map_all.pbtxt`` and
``OUT/ava_synthetic.json``. Optional ``--frames`` also writes PySlowFast frame folders
``OUT/frames/{video_id}/{video_id}_{000001}.jpg``.

Every video shows 2-3 actors: textured rectangles drifting slowly on a textured background. Each
actor has several labels at once (multi-label):

=====  ==============  ==========================================================================
id     action          cue
=====  ==============  ==========================================================================
1      flicker_low     brightness oscillates at 4.5-7 Hz      } one of the two; aliased at the
2      flicker_high    brightness oscillates at 10.5-13 Hz    } slow stride (~10 frames)
3      orbit_cw        a dot circles inside the box clockwise, 0.1-0.2 turns per frame  } one of
4      orbit_ccw       the same, counter-clockwise                                      } the two
5      striped         the actor has horizontal stripes (static: visible at any frame rate)
6      large           the actor is large (static; annotated but NOT in label_map.pbtxt)
=====  ==============  ==========================================================================

Why 1-4 need the fast pathway (16 frames at rate 2, alpha 4, 30 fps): the fast pathway steps 2
frames, the slow one ~10. The flicker bands are each about ``30 / 10`` Hz wide, so at the slow
stride the phase advance is spread over a whole cycle for both classes, while at the fast stride
the low band advances 0.3-0.47 cycles (near alternation) and the high band aliases to a slow
drift (see ``slowfast_tf/data/synthetic.py``). An orbit advances 0.2-0.4 turns per fast step (less
than half a turn: the direction is unambiguous) but 1-2 turns per slow step (direction lost).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import flags

from slowfast_tf.data.ava import ava_files
from slowfast_tf.data.ava.ava_files import AvaRow
from slowfast_tf.utils import cli_flags

ACTIONS = {1: "flicker_low", 2: "flicker_high", 3: "orbit_cw", 4: "orbit_ccw", 5: "striped",
           6: "large"}
EVAL_IDS = (1, 2, 3, 4, 5)
TIME_OFFSET = 900
SPLITS = ("train", "val", "test")
_FLICKER_HZ = {1: (4.5, 7.0), 2: (10.5, 13.0)}
_ORBIT_TURNS_PER_FRAME = (0.1, 0.2)


def render_video(rng: np.random.Generator, height: int = 48, width: int = 64, num_frames: int = 120,
                 fps: float = 30.0, num_actors: int | None = None):
    """Renders one video.

    Returns:
        ``(frames uint8 [T, H, W, 3], actors)`` where ``actors`` is a list of dicts with
        ``labels`` (action ids) and ``boxes`` (float ``[T, 4]`` normalised x1, y1, x2, y2).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0.05, 0.3, 3)
    background = base[None, None] + rng.normal(0, 0.03, (height, width, 3))
    count = num_actors or int(rng.integers(2, 4))
    t = np.arange(num_frames) / fps
    frames = np.repeat(background[None], num_frames, axis=0).astype(np.float32)
    actors = []
    for _ in range(count):
        large = rng.random() < 0.4
        h = (rng.uniform(0.5, 0.6) if large else rng.uniform(0.3, 0.38)) * height
        w = h * rng.uniform(0.7, 0.9)
        flicker = int(rng.integers(1, 3))
        orbit = int(rng.integers(3, 5))
        striped = bool(rng.random() < 0.5)
        hz = rng.uniform(*_FLICKER_HZ[flicker])
        phase = rng.uniform(0, 2 * np.pi)
        turns = rng.uniform(*_ORBIT_TURNS_PER_FRAME) * (1 if orbit == 3 else -1)
        turn0 = rng.uniform(0, 1)
        colour = rng.uniform(0.55, 1.0, 3)
        y0, x0 = rng.uniform(0, height - h), rng.uniform(0, width - w)
        vy, vx = rng.uniform(-0.2, 0.2, 2)
        boxes = np.zeros((num_frames, 4), np.float32)
        for i in range(num_frames):
            # bounce inside the frame
            y = _bounce(y0 + vy * i, height - h)
            x = _bounce(x0 + vx * i, width - w)
            boxes[i] = (x / width, y / height, (x + w) / width, (y + h) / height)
            inside = (yy >= y) & (yy < y + h) & (xx >= x) & (xx < x + w)
            level = 0.55 + 0.45 * np.cos(2 * np.pi * hz * t[i] + phase)
            pixel = colour * level
            if striped:
                stripe = (((yy - y) // 3) % 2 == 0)[..., None]
                pixel = np.where(stripe, pixel, pixel * 0.35)
            frames[i] = np.where(inside[..., None], pixel, frames[i])
            # orbiting dot (clockwise on screen = angle increasing with y pointing down)
            angle = 2 * np.pi * (turn0 + turns * i)
            r = 0.3 * min(h, w)
            cy, cx = y + h / 2 + r * np.sin(angle), x + w / 2 + r * np.cos(angle)
            dot = ((yy - cy) ** 2 + (xx - cx) ** 2) <= (0.12 * min(h, w)) ** 2 + 1
            frames[i] = np.where(dot[..., None], np.array([0.0, 0.0, 0.0]), frames[i])
        labels = [flicker, orbit] + ([5] if striped else []) + ([6] if large else [])
        actors.append({"labels": sorted(labels), "boxes": boxes})
    return np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8), actors


def _bounce(v: float, limit: float) -> float:
    period = 2 * limit
    v = v % period if period > 0 else 0.0
    return v if v <= limit else period - v


def generate(
    out: str,
    num_videos: dict[str, int] | None = None,
    height: int = 48,
    width: int = 64,
    seconds: int = 5,
    fps: int = 30,
    seed: int = 0,
    write_frames: bool = False,
    codec: str | None = None,
) -> dict:
    """Writes the set (see module doc) and returns its description."""
    from slowfast_tf.data.synthetic import pick_codec, write_mp4

    num_videos = num_videos or {"train": 6, "val": 2}
    if height % 2 or width % 2 or min(height, width) < 16:
        raise ValueError(f"height and width must be even and >= 16. Received: {height}x{width}")
    if seconds < 3:
        raise ValueError(f"seconds must be >= 3 (keyframes need context). Received: {seconds}")
    unknown = [s for s in num_videos if s not in SPLITS]
    if unknown:
        raise ValueError(f"splits must be in {SPLITS}. Received: {sorted(num_videos)}")
    codec = codec or pick_codec()
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    num_frames = seconds * fps
    keyframe_secs = range(TIME_OFFSET + 1, TIME_OFFSET + seconds)  # 1 fps, away from the ends
    counts = {}
    for split, count in num_videos.items():
        gt_rows, box_rows = [], []
        for v in range(count):
            video_id = f"{split}_{v:03d}"
            rng = np.random.default_rng([seed, SPLITS.index(split), v])
            frames, actors = render_video(rng, height, width, num_frames, fps)
            write_mp4(os.path.join(out, "videos", video_id + ".mp4"), frames, fps, codec)
            if write_frames:
                _write_frames(os.path.join(out, "frames", video_id), video_id, frames)
            for sec in keyframe_secs:
                frame = (sec - TIME_OFFSET) * fps
                for person, actor in enumerate(actors):
                    box = tuple(round(float(c), 3) for c in actor["boxes"][frame])
                    gt_rows += [AvaRow(video_id, sec, box, a, person_id=person) for a in actor["labels"]]
                    noisy = np.clip(np.array(box) + rng.normal(0, 0.01, 4), 0, 1)
                    box_rows.append(AvaRow(video_id, sec, tuple(noisy), -1,
                                           score=float(rng.uniform(0.7, 1.0))))
                # one low-scoring false box per keyframe
                fx, fy = rng.uniform(0, 0.6, 2)
                box_rows.append(AvaRow(video_id, sec, (fx, fy, fx + 0.3, fy + 0.3), -1,
                                       score=float(rng.uniform(0.05, 0.6))))
        ava_files.write_annotations(os.path.join(out, f"{split}.csv"), gt_rows)
        ava_files.write_detections(os.path.join(out, f"{split}_boxes.csv"), box_rows)
        excluded = [(f"{split}_000", keyframe_secs[0])] if count else []
        ava_files.write_exclusions(os.path.join(out, f"{split}_exclusions.csv"), excluded)
        counts[split] = {"videos": count, "keyframes": count * len(keyframe_secs),
                         "gt_rows": len(gt_rows)}
    ava_files.write_label_map(os.path.join(out, "label_map.pbtxt"),
                              {i: ACTIONS[i] for i in EVAL_IDS})
    ava_files.write_label_map(os.path.join(out, "label_map_all.pbtxt"), ACTIONS)
    info = {"actions": ACTIONS, "eval_ids": list(EVAL_IDS), "codec": codec, "height": height,
            "width": width, "fps": fps, "seconds": seconds, "time_offset": TIME_OFFSET,
            "seed": seed, "counts": counts}
    with open(os.path.join(out, "ava_synthetic.json"), "w") as f:
        json.dump(info, f, indent=2)
    return info


def _write_frames(folder: str, video_id: str, frames: np.ndarray) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{video_id}_{i + 1:06d}.jpg"), quality=90)


def define_flags(fv: flags.FlagValues) -> None:
    f = {"flag_values": fv}
    flags.DEFINE_string("output_dir", None, "Output directory.", **f)
    flags.DEFINE_integer("num_train", 6, "Train videos.", **f)
    flags.DEFINE_integer("num_val", 2, "Val videos.", **f)
    flags.DEFINE_integer("num_test", 0, "Test videos.", **f)
    flags.DEFINE_integer("height", 48, "Frame height.", **f)
    flags.DEFINE_integer("width", 64, "Frame width.", **f)
    flags.DEFINE_integer("seconds", 5, "Video length; keyframes 901...", **f)
    flags.DEFINE_integer("fps", 30, "Frame rate.", **f)
    flags.DEFINE_integer("seed", 0, "Random seed.", **f)
    flags.DEFINE_bool("frames", False, "Also write JPEG frame folders.", **f)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def main(argv: Sequence[str] | None = None) -> dict:
    args, _ = cli_flags.parse(
        argv, define_flags, "python -m slowfast_tf.data.ava.ava_synthetic",
        {"--out": "--output_dir"}, __doc__.split("\n\n")[0],
    )
    counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
    info = generate(args.output_dir, {k: v for k, v in counts.items() if v > 0}, args.height, args.width,
                    args.seconds, args.fps, args.seed, args.frames)
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    sys.exit(cli_flags.run(main))
