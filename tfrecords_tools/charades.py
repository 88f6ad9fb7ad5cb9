"""Charades as PySlowFast ships it: extracted RGB frame folders + frame-list CSVs -> TFRecords.

``python -m tfrecords_tools convert --input_format charades --input charades/frame_lists/train.csv
--path_prefix charades/Charades_v1_rgb --split train --output_dir OUT`` reads a PySlowFast frame list
(space separated, header ``original_vido_id video_id frame_id path labels``; ``labels`` is a
comma-separated list of class indices for that frame, ``""`` for none) and writes one record per
video with

- every listed frame's JPEG bytes, unchanged and in ``frame_id`` order (no fps resampling, as the
  reference; ``--short_side`` re-encodes only frames whose short side differs, 0 keeps all);
- the per-frame label sets (``frame/label/index``, one int64 list per frame), so a training
  clip's label is the union of the labels inside its window (``DataConfig.temporal_sampling=
  "charades"``);
- the video-level union as the record's labels (what val/test use).

Missing frames or unreadable rows are listed in ``failures.tsv`` / ``manifest.json``; shard
files are written atomically.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field

NUM_CLASSES = 157
HEADER = ("original_vido_id", "video_id", "frame_id", "path", "labels")


@dataclass
class CharadesVideo:
    """One video of a frame list: frame paths and their label sets, in frame order."""

    video_id: str
    split: str
    frames: list = field(default_factory=list)  # (frame_id, path, tuple of int labels)
    error: str = ""

    @property
    def labels(self) -> list[int]:
        """Video-level label set: the union of the per-frame labels."""
        return sorted({lab for _, _, labs in self.frames for lab in labs})


def _parse_labels(text: str, where: str) -> tuple[int, ...]:
    text = text.strip().strip('"')
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(
            f"Charades labels must be comma-separated class indices. Received: {text!r} at {where}"
        ) from None


def read_frame_list(csv_path: str, frame_root: str = "", split: str = "train") -> list[CharadesVideo]:
    """Reads a PySlowFast Charades frame list into videos (grouped by ``original_vido_id``).

    Args:
        csv_path: str, the frame list (``frame_lists/{train,val}.csv``).
        frame_root: str, joined to every ``path`` (PySlowFast ``PATH_PREFIX``).
        split: str, output split name.

    Returns:
        list of CharadesVideo in first-appearance order; a video with a missing frame file
        carries an ``error``.
    """
    videos: dict[str, CharadesVideo] = {}
    with open(csv_path, newline="") as f:
        reader = csv.reader(f, delimiter=" ", skipinitialspace=True)
        header = tuple(next(reader, ()))
        if header[:5] != HEADER:
            raise ValueError(
                f"A Charades frame list needs the header {' '.join(HEADER)!r}. "
                f"Received: {' '.join(header)!r} in {csv_path}"
            )
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{csv_path}:{line_no}"
            if len(row) not in (4, 5):
                raise ValueError(f"A frame-list row needs 5 columns. Received: {row} at {where}")
            vid, _, frame_id, path = row[:4]
            labels = _parse_labels(row[4] if len(row) == 5 else "", where)
            video = videos.setdefault(vid, CharadesVideo(vid, split))
            try:
                frame_id = int(frame_id)
            except ValueError:
                raise ValueError(f"frame_id must be an int. Received: {frame_id!r} at {where}") from None
            full = os.path.join(frame_root, path) if frame_root else path
            if not video.error and not os.path.exists(full):
                video.error = f"missing frame {full}"
            video.frames.append((frame_id, full, labels))
    for video in videos.values():
        video.frames.sort(key=lambda f: f[0])
    return list(videos.values())


def _resize_jpeg(data: bytes, short_side: int, qscale_quality: int = 90) -> tuple[bytes, int, int]:
    import tensorflow as tf

    from slowfast_tf.video_io import output_size

    image = tf.io.decode_jpeg(data, channels=3)
    h, w = int(image.shape[0]), int(image.shape[1])
    if short_side <= 0 or min(h, w) == short_side:
        return data, h, w
    nh, nw = output_size(h, w, short_side)
    image = tf.image.resize(image, (nh, nw), method="area", antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.io.encode_jpeg(image, quality=qscale_quality).numpy(), nh, nw


def make_record(video: CharadesVideo, classes: list[str], short_side: int = 0) -> bytes:
    """Serialized SequenceExample of one video, with per-frame labels (see module docstring)."""

    from slowfast_tf.data.records import FRAME_LABEL_KEY, make_sequence_example

    jpegs, size = [], None
    for _, path, _ in video.frames:
        with open(path, "rb") as f:
            data, h, w = _resize_jpeg(f.read(), short_side)
        size = size or (h, w)
        jpegs.append(data)
    labels = video.labels
    bad = [lab for lab in labels if not 0 <= lab < len(classes)]
    if bad:
        raise ValueError(f"label {bad[0]} not in the {len(classes)} classes")
    example = make_sequence_example(
        jpegs, labels, [classes[i] for i in labels], video.video_id, 0.0, size[0], size[1]
    )
    per_frame = example.feature_lists.feature_list[FRAME_LABEL_KEY]
    for _, _, labs in video.frames:
        per_frame.feature.add().int64_list.value.extend(labs)
    return example.SerializeToString()


def _classes(classes_file: str | None, out_dir: str, videos: list[CharadesVideo]) -> list[str]:
    for path in (classes_file, os.path.join(out_dir, "classes.txt")):
        if path and os.path.exists(path):
            with open(path) as f:
                # Charades_v1_classes.txt lines are "c000 Holding some clothes": keep the id.
                return [line.split()[0] if line.strip() else "" for line in f if line.strip()]
    top = max((lab for v in videos for lab in v.labels), default=NUM_CLASSES - 1)
    return [f"c{i:03d}" for i in range(max(top + 1, NUM_CLASSES))]


def convert_charades(
    videos: list[CharadesVideo], out_dir: str, classes_file: str | None = None,
    num_shards: int = 0, videos_per_shard: int = 64, short_side: int = 0, seed: int = 0,
) -> dict:
    """Writes ``{split}-SSSSS-of-NNNNN.tfrecord`` shards, ``classes.txt``, ``manifest.json`` and
    ``failures.tsv`` (same layout as the video converter) and returns the manifest."""
    import tensorflow as tf

    from slowfast_tf.utils.fileio import atomic_path, atomic_write_text
    from tfrecords_tools.convert import write_failures_tsv

    os.makedirs(out_dir, exist_ok=True)
    classes = _classes(classes_file, out_dir, videos)
    atomic_write_text(os.path.join(out_dir, "classes.txt"), "\n".join(classes) + "\n")
    splits: dict[str, dict] = {}
    failures: list[dict] = []
    for split in sorted({v.split for v in videos}):
        items = [v for v in videos if v.split == split]
        random.Random(seed).shuffle(items)
        count = num_shards or max(1, -(-len(items) // videos_per_shard))
        entry = {"videos": 0, "failures": 0, "shards": count, "frames": 0, "per_class": Counter()}
        for shard in range(count):
            name = os.path.join(out_dir, f"{split}-{shard:05d}-of-{count:05d}.tfrecord")
            with atomic_path(name) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                for video in items[shard::count]:
                    try:
                        if video.error:
                            raise ValueError(video.error)
                        writer.write(make_record(video, classes, short_side))
                    except (OSError, ValueError, tf.errors.OpError) as e:
                        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                        failures.append({"split": split, "path": video.frames[0][1] if video.frames
                                         else "", "video_id": video.video_id, "reason": reason})
                        entry["failures"] += 1
                        continue
                    entry["videos"] += 1
                    entry["frames"] += len(video.frames)
                    entry["per_class"].update(classes[i] for i in video.labels)
        entry["per_class"] = dict(sorted(entry["per_class"].items()))
        splits[split] = entry
    manifest = {"classes": classes, "splits": splits, "failures": failures,
                "settings": {"input_format": "charades", "short_side": short_side,
                             "target_fps": 0},
                "format": "tf.train.SequenceExample; keys in slowfast_tf/data/records.py"}
    atomic_write_text(os.path.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2))
    write_failures_tsv(os.path.join(out_dir, "failures.tsv"), failures)
    return manifest


def convert_from_args(args) -> dict:
    """The ``convert --input_format charades`` entry point (parsed flags of cli.py)."""
    if not os.path.exists(args.input):
        raise ValueError(f"--input does not exist. Received: input={args.input!r}")
    videos = read_frame_list(args.input, args.path_prefix or "", args.split or "train")
    manifest = convert_charades(
        videos, args.output_dir, args.classes, args.num_shards, args.videos_per_shard,
        args.short_side, args.seed,
    )
    counts = {s: {k: v for k, v in e.items() if k != "per_class"}
              for s, e in manifest["splits"].items()}
    print(json.dumps({"out": args.output_dir, "splits": counts, "failures": len(manifest["failures"])}))
    return manifest


def write_synthetic(out_dir: str, videos: dict, num_frames: int = 24, size: int = 32,
                    num_classes: int = 4, seed: int = 0) -> dict:
    """A tiny Charades-layout set: ``frames/{vid}/{vid}-{i:06d}.jpg`` + ``{split}.csv`` lists.

    Each video has 2-3 actions with random, overlapping frame intervals; while class ``c`` is
    active, a bright square fills quadrant ``c % 4`` in colour channel ``c % 3`` (so the labels
    are visible in the frames). Deterministic for a seed.

    Args:
        out_dir: str.
        videos: dict ``{split: number of videos}``.
        num_frames, size, num_classes, seed: frames per video, frame side, classes, seed.

    Returns:
        ``{split: frame-list path}``.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    lists = {}
    half = size // 2
    for split, count in videos.items():
        rows = [" ".join(HEADER)]
        for v in range(count):
            vid = f"{split[:2].upper()}{v:03d}"
            os.makedirs(os.path.join(out_dir, "frames", vid), exist_ok=True)
            actions = []
            for c in rng.choice(num_classes, size=int(rng.integers(2, 4)), replace=False):
                a = int(rng.integers(0, num_frames - 4))
                actions.append((int(c), a, int(rng.integers(a + 4, num_frames + 1))))
            for i in range(num_frames):
                image = np.full((size, size, 3), 20, np.uint8)
                labels = sorted(c for c, a, b in actions if a <= i < b)
                for c in labels:
                    y, x = (c % 4) // 2 * half, (c % 4) % 2 * half
                    image[y : y + half, x : x + half, c % 3] = 230
                rel = f"{vid}/{vid}-{i + 1:06d}.jpg"
                data = tf.io.encode_jpeg(image, quality=95).numpy()
                with open(os.path.join(out_dir, "frames", rel), "wb") as f:
                    f.write(data)
                rows.append(f'{vid} {v} {i} {rel} "{",".join(map(str, labels))}"')
        lists[split] = os.path.join(out_dir, f"{split}.csv")
        with open(lists[split], "w") as f:
            f.write("\n".join(rows) + "\n")
    return lists
