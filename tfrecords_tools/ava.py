"""``python -m tfrecords_tools convert-ava``: AVA v2.x videos or frame folders -> segment records.

    python -m tfrecords_tools convert-ava --annotations ava_train_v2.2.csv \
        --label_map ava_action_list_v2.2_for_activitynet_2019.pbtxt --videos videos/ \
        --split train --output_dir records/ [--boxes person_boxes.csv] [--exclusions excl.csv] \
        [--time_offset 900]

Inputs: ``--videos DIR`` holding ``{video_id}.{mp4,mkv,...}`` (decoded and resampled with PyAV by
``tfrecords_tools.encode``, like classification), or ``--frames DIR`` holding PySlowFast frame
folders ``{video_id}/*.jpg`` (frame 0 = the first file in name order; the JPEGs are stored as they
are). Keyframes are the seconds that have a ground-truth or a detector row (1 fps); the record
layout is in ``slowfast_tf/data/ava/ava_records.py``. Detector rows keep their score; score
thresholds are applied by the input pipeline, so one conversion serves every threshold.

Output::

    OUTPUT_DIR/{split}-{k:05d}-of-{n:05d}.tfrecord   segment records (resumable: finished shards are kept)
    OUTPUT_DIR/label_map.pbtxt                       copy of --label_map
    OUTPUT_DIR/{split}_groundtruth.csv               the annotations, for the evaluator
    OUTPUT_DIR/{split}_exclusions.csv                the exclusions (empty file when none)
    OUTPUT_DIR/{split}_ava.json                      counts, failures and the measured bytes per keyframe

Memory: a video's frames are held as JPEGs while its segments are written (a 15-minute cut at
30 fps and 256 short side is roughly 0.5 GB per worker); convert PySlowFast's 900-1800 s cuts
(``--time_offset 900``) rather than whole movies.

The JSON line printed at the end includes ``bytes_per_keyframe`` (serialized record bytes divided
by keyframes) and ``frames_per_keyframe``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil

from absl import flags

from tfrecords_tools.encode import EncodeSettings, encode_video
from tfrecords_tools.sources import VIDEO_EXTENSIONS


def define_flags(fv: flags.FlagValues) -> None:
    """Flags of ``convert-ava``."""
    f = {"flag_values": fv}
    flags.DEFINE_string(
        "annotations", None, "Ground-truth CSV (video,sec,x1,y1,x2,y2,action,person).", **f
    )
    flags.DEFINE_multi_string("boxes", [], "Detector-box CSV with scores (repeatable).", **f)
    flags.DEFINE_string("label_map", None, "Label map pbtxt (v2.1 or v2.2).", **f)
    flags.DEFINE_string("exclusions", None, "Exclusions CSV (video,sec).", **f)
    flags.DEFINE_string("videos", None, "Folder of {video_id}.mp4 (any PyAV-readable container).", **f)
    flags.DEFINE_string("frames", None, "Folder of {video_id}/*.jpg frame folders.", **f)
    flags.DEFINE_string("split", None, "Output split name.", **f)
    flags.DEFINE_string("output_dir", None, "Output directory.", **f)
    flags.DEFINE_float(
        "time_offset", 0.0, "Video time (s) of frame 0; 900 for PySlowFast's 15-minute cuts.", **f
    )
    flags.DEFINE_float("fps", 30.0, "Frame rate of the stored frames.", **f)
    flags.DEFINE_integer("short_side", 256, "--videos: resize short side (0 keeps).", **f)
    flags.DEFINE_integer("jpeg_qscale", 3, "--videos: MJPEG quality 2..31.", **f)
    flags.DEFINE_integer("segment_seconds", 10, "Keyframe seconds per record.", **f)
    flags.DEFINE_integer(
        "context_frames", 32, "Frames stored on each side of a keyframe (32x2 clips need 32).", **f
    )
    flags.DEFINE_integer("videos_per_shard", 16, "Videos per output shard.", **f)
    flags.DEFINE_integer("workers", 0, "Decoding processes (0 = in-process).", **f)
    flags.mark_flags_as_required(["label_map", "split", "output_dir"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["videos", "frames"], required=True, flag_values=fv)


def load_frames(task: tuple) -> dict:
    """Worker: ``(video_id, kind, path, settings)`` -> frames (never raises; TF-free)."""
    video_id, kind, path, settings = task
    try:
        if kind == "video":
            video = encode_video(path, settings)
            return {"ok": True, "frames": video.jpeg_frames, "height": video.height,
                    "width": video.width}
        names = sorted(n for n in os.listdir(path) if n.lower().endswith((".jpg", ".jpeg")))
        if not names:
            raise ValueError(f"no .jpg frames in {path}")
        frames = []
        for name in names:
            with open(os.path.join(path, name), "rb") as f:
                frames.append(f.read())
        from PIL import Image

        with Image.open(os.path.join(path, names[0])) as image:
            width, height = image.size
        return {"ok": True, "frames": frames, "height": height, "width": width}
    except Exception as e:  # noqa: BLE001 - any decoder failure marks the video as failed
        return {"ok": False, "reason": f"{type(e).__name__}: {e}"}


def _find_video(root: str, video_id: str) -> str | None:
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(root, video_id + ext)
        if os.path.isfile(path):
            return path
    return None


def plan_segments(keyframes, num_frames, fps, time_offset, segment_seconds, context_frames):
    """Splits sorted keyframe seconds into segments: ``[(secs, lo, hi)]`` with frames
    ``[lo, hi)`` holding every frame a clip of those keyframes can touch after clamping."""
    if not keyframes:
        return []
    first = keyframes[0]
    groups: dict[int, list[int]] = {}
    for sec in keyframes:
        groups.setdefault((sec - first) // segment_seconds, []).append(sec)
    plan = []
    for secs in groups.values():
        centres = [int(round((s - time_offset) * fps)) for s in secs]
        lo = min(max(min(centres) - context_frames, 0), num_frames - 1)
        hi = min(max(max(centres) + context_frames, lo + 1), num_frames)
        plan.append((secs, lo, hi))
    return plan


def _check_rows(rows, source: str, allow_unlabelled: bool) -> None:
    from slowfast_tf.data.ava.ava_files import NUM_ACTIONS

    for r in rows:
        if not (1 <= r.action_id <= NUM_ACTIONS or (allow_unlabelled and r.action_id == -1)):
            raise ValueError(f"{source}: action ids must be in 1..{NUM_ACTIONS}. Received: "
                             f"{r.action_id} at {r.video_id},{r.sec:04d}")


def convert_ava(args: flags.FlagValues) -> dict:
    import tensorflow as tf

    from slowfast_tf.data.ava import ava_files
    from slowfast_tf.data.ava.ava_records import make_segment_example
    from slowfast_tf.utils.fileio import atomic_path, atomic_write_text

    if args.segment_seconds < 1 or args.context_frames < 0 or args.fps <= 0:
        raise ValueError("--segment_seconds must be >= 1, --context_frames >= 0 and --fps > 0. "
                         f"Received: {args.segment_seconds}, {args.context_frames}, {args.fps}")
    if not args.annotations and not args.boxes:
        raise ValueError("Give --annotations and/or --boxes. Received: neither")
    label_map = ava_files.read_label_map(args.label_map)
    gt_rows = ava_files.read_annotations(args.annotations) if args.annotations else []
    _check_rows(gt_rows, args.annotations, allow_unlabelled=False)
    pred_rows = []
    for path in args.boxes:
        rows = ava_files.read_detections(path)
        _check_rows(rows, path, allow_unlabelled=True)
        pred_rows += rows
    excluded = ava_files.read_exclusions(args.exclusions) if args.exclusions else set()

    tables: dict[str, tuple[dict, dict]] = {}
    for rows, side in ((gt_rows, 0), (pred_rows, 1)):
        for r in rows:
            tables.setdefault(r.video_id, ({}, {}))[side].setdefault(r.sec, []).append(r)
    video_ids = sorted(tables)
    root = args.videos or args.frames
    if not os.path.isdir(root):
        raise ValueError(f"--videos/--frames must be a directory. Received: {root!r}")
    settings = EncodeSettings(args.fps, args.short_side, args.jpeg_qscale)
    tasks, failures = [], []
    for vid in video_ids:
        path = _find_video(root, vid) if args.videos else os.path.join(root, vid)
        if path is None or not os.path.exists(path):
            failures.append({"video_id": vid, "reason": f"not found under {root}"})
            continue
        tasks.append((vid, "video" if args.videos else "frames", path, settings))

    os.makedirs(os.path.join(args.output_dir, "_meta"), exist_ok=True)
    num_shards = max(1, math.ceil(len(tasks) / max(1, args.videos_per_shard)))
    shard_tasks = [tasks[i::num_shards] for i in range(num_shards)]
    stats = {"videos": 0, "segments": 0, "keyframes": 0, "frames": 0, "bytes": 0,
             "keyframes_outside_video": 0}
    pool = None
    if args.workers > 0:
        pool = multiprocessing.get_context("spawn").Pool(args.workers)
    try:
        for k, chunk in enumerate(shard_tasks):
            name = os.path.join(args.output_dir, f"{args.split}-{k:05d}-of-{num_shards:05d}.tfrecord")
            shard_stats_path = os.path.join(args.output_dir, "_meta", os.path.basename(name) + ".json")
            if os.path.exists(name) and os.path.exists(shard_stats_path):
                with open(shard_stats_path) as f:
                    done = json.load(f)
                for key in stats:
                    stats[key] += done["stats"][key]
                failures += done["failures"]
                continue
            shard = {key: 0 for key in stats}
            shard_failures = []
            results = pool.imap(load_frames, chunk) if pool else map(load_frames, chunk)
            with atomic_path(name) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                for (vid, _, _, _), loaded in zip(chunk, results, strict=True):
                    if not loaded["ok"]:
                        shard_failures.append({"video_id": vid, "reason": loaded["reason"]})
                        continue
                    gt, pred = tables[vid]
                    frames = loaded["frames"]
                    keyframes = sorted(set(gt) | set(pred))
                    plan = plan_segments(keyframes, len(frames), args.fps, args.time_offset,
                                         args.segment_seconds, args.context_frames)
                    for secs, lo, hi in plan:
                        data = make_segment_example(
                            vid, frames[lo:hi], lo, len(frames), args.fps, loaded["height"],
                            loaded["width"], secs, gt, pred, args.time_offset,
                        ).SerializeToString()
                        writer.write(data)
                        shard["segments"] += 1
                        shard["keyframes"] += len(secs)
                        shard["frames"] += hi - lo
                        shard["bytes"] += len(data)
                    shard["keyframes_outside_video"] += sum(
                        not 0 <= round((s - args.time_offset) * args.fps) < len(frames)
                        for s in keyframes)
                    shard["videos"] += 1
            atomic_write_text(shard_stats_path, json.dumps({"stats": shard, "failures": shard_failures}))
            for key in stats:
                stats[key] += shard[key]
            failures += shard_failures
    finally:
        if pool:
            pool.close()
            pool.join()

    shutil.copyfile(args.label_map, os.path.join(args.output_dir, "label_map.pbtxt"))
    ava_files.write_annotations(os.path.join(args.output_dir, f"{args.split}_groundtruth.csv"), gt_rows)
    ava_files.write_exclusions(os.path.join(args.output_dir, f"{args.split}_exclusions.csv"), sorted(excluded))
    keyframes = max(stats["keyframes"], 1)
    summary = {
        "out": args.output_dir, "split": args.split, "shards": num_shards, **stats,
        "bytes_per_keyframe": round(stats["bytes"] / keyframes),
        "frames_per_keyframe": round(stats["frames"] / keyframes, 2),
        "label_map_classes": len(label_map), "excluded_keyframes": len(excluded),
        "failures": failures,
    }
    atomic_write_text(os.path.join(args.output_dir, f"{args.split}_ava.json"), json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"} | {"failures": len(failures)}))
    return summary


def run(args: flags.FlagValues) -> dict:
    """CLI entry: bad input -> one ``error:`` line and exit code 2."""
    import sys

    try:
        return convert_ava(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
