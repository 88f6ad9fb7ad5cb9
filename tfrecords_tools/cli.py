"""Command line of ``python -m tfrecords_tools``: ``convert`` and ``inspect`` subcommands.

Bad input (a malformed listing line, a missing or empty input, an unwritable ``--out``, a
corrupt shard given to ``inspect``, a rerun whose plan differs) prints one ``error: ...`` line
and exits with status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence

from tfrecords_tools.encode import EncodeSettings
from tfrecords_tools.sources import read_folder_tree, read_kinetics_csv, read_list_file

INPUT_FORMATS = ("auto", "kinetics", "list", "folder", "charades")


def detect_format(path: str) -> str:
    """``folder`` for a directory, ``kinetics`` for a CSV whose header has ``youtube_id``, else
    ``list`` (PySlowFast ``path label``)."""
    if os.path.isdir(path):
        return "folder"
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    return "kinetics" if "youtube_id" in header else "list"


def load_items(args: argparse.Namespace):
    if not os.path.exists(args.input):
        raise ValueError(f"--input does not exist. Received: input={args.input!r}")
    fmt = detect_format(args.input) if args.input_format == "auto" else args.input_format
    if fmt == "kinetics":
        root = args.video_root or os.path.dirname(os.path.abspath(args.input))
        items = read_kinetics_csv(args.input, root, args.split)
    elif fmt == "list":
        items = read_list_file(args.input, args.split or "train", args.path_prefix or "")
    elif fmt == "folder":
        items = read_folder_tree(args.input, args.split or "train")
    else:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}. Received: {fmt!r}")
    if not items:
        which = f" of split {args.split!r}" if fmt == "kinetics" and args.split else ""
        raise ValueError(f"--input lists no videos{which} ({fmt} format). Received: {args.input}")
    return items


def check_out_dir(out: str) -> None:
    """Creates `out` or raises a one-line ValueError saying why it cannot be written."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".tmp-{os.getpid()}-write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--out cannot be written ({e.strerror or e}). Received: out={out!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfrecords_tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="videos -> sharded TFRecords of SequenceExamples")
    conv.add_argument("--input", required=True,
                      help="Kinetics CSV, PySlowFast list file (path label) or folder-per-class root")
    conv.add_argument("--input-format", choices=INPUT_FORMATS, default="auto")
    conv.add_argument("--out", required=True, help="output directory")
    conv.add_argument("--split", default=None,
                      help="split name (list/folder input; for a Kinetics CSV: keep only this split)")
    conv.add_argument("--video-root", default=None, help="Kinetics: folder holding the clips")
    conv.add_argument("--path-prefix", default="", help="list: prefix joined to every path")
    conv.add_argument("--classes", default=None,
                      help="classes file (one name per line); default OUT/classes.txt or derived")
    conv.add_argument("--target-fps", type=float, default=30.0, help="resample to this fps (0 keeps)")
    conv.add_argument("--short-side", type=int, default=256, help="resize short side (0 keeps)")
    conv.add_argument("--jpeg-qscale", type=int, default=3, help="MJPEG quality 2 (best)..31")
    conv.add_argument("--max-seconds", type=float, default=0.0, help="truncate videos (0 = all)")
    conv.add_argument("--max-duration-seconds", type=float, default=1800.0,
                      help="refuse (list in failures.tsv) videos longer than this; 0 = no limit "
                      "(default: %(default)s)")
    conv.add_argument("--max-frames", type=int, default=54_000,
                      help="refuse videos giving more output frames; 0 = no limit "
                      "(default: %(default)s)")
    conv.add_argument("--max-gap-seconds", type=float, default=10.0,
                      help="refuse videos with a longer jump between frame timestamps; 0 = no "
                      "limit (default: %(default)s)")
    conv.add_argument("--overwrite", action="store_true",
                      help="when OUT holds a split converted from a different input list or "
                      "settings, delete its shards and convert it again (default: refuse)")
    conv.add_argument("--num-shards", type=int, default=0, help="shards per split (0 = auto)")
    conv.add_argument("--videos-per-shard", type=int, default=64)
    conv.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="encoding processes (0 = in-process)")
    conv.add_argument("--seed", type=int, default=0, help="seed of the shard assignment")
    conv.add_argument("--runner", choices=("local", "beam"), default="local")
    conv.add_argument("--dry-run", action="store_true",
                      help="beam: check the pipeline options after -- and print the plan only")
    conv.add_argument("--no-progress", action="store_true")
    conv.add_argument("--delay-per-video", type=float, default=0.0, help=argparse.SUPPRESS)

    from tfrecords_tools import ava

    ava.add_parser(sub)
    ins = sub.add_parser("inspect", help="counts, shapes and sample frames of converted shards")
    ins.add_argument("pattern", help='glob of shards, e.g. "OUT/train-*.tfrecord"')
    ins.add_argument("--num-records", type=int, default=4, help="records to show")
    ins.add_argument("--frames", type=int, default=6, help="frames per contact-sheet row")
    ins.add_argument("--sheet", default=None, help="write a PNG contact sheet here")
    ins.add_argument("--max-records", type=int, default=0, help="count at most this many (0 = all)")
    ins.add_argument("--ascii-width", type=int, default=32, help="0 disables the ASCII preview")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:  # everything after -- goes to Beam's PipelineOptions
        split_at = argv.index("--")
        argv, beam_args = argv[:split_at], argv[split_at + 1 :]
    args = build_parser().parse_args(argv)
    if args.command == "convert-ava":
        from tfrecords_tools.ava import run

        return run(args)
    if args.command == "inspect":
        from tfrecords_tools.inspect_records import inspect

        return inspect(args.pattern, args.num_records, args.frames, args.sheet,
                       args.max_records, args.ascii_width)

    if args.input_format == "charades":  # frame folders + frame lists: tfrecords_tools/charades.py
        from tfrecords_tools.charades import convert_from_args

        return convert_from_args(args)
    settings = EncodeSettings(
        target_fps=args.target_fps, short_side=args.short_side, jpeg_qscale=args.jpeg_qscale,
        max_seconds=args.max_seconds, delay_per_video=args.delay_per_video,
        max_duration=args.max_duration_seconds, max_frames=args.max_frames,
        max_gap=args.max_gap_seconds,
    )
    items = load_items(args)
    if args.runner == "local":
        check_out_dir(args.out)
    if args.runner == "beam":
        from tfrecords_tools.beam_runner import check_pipeline_options, run_beam
        from tfrecords_tools.convert import LabelMap

        plan = check_pipeline_options(beam_args)  # install hint / missing options, before work
        if args.dry_run:
            plan["videos"] = dict(sorted(Counter(item.split for item in items).items()))
            print(json.dumps(plan, default=str))
            return plan
        os.makedirs(args.out, exist_ok=True)
        label_map = LabelMap.resolve(args.out, items, args.classes)
        return run_beam(items, args.out, settings, label_map.classes, args.num_shards, beam_args)

    from tfrecords_tools.convert import convert

    manifest = convert(
        items, args.out, settings, classes_file=args.classes, num_shards=args.num_shards,
        videos_per_shard=args.videos_per_shard, workers=args.workers, seed=args.seed,
        progress=not args.no_progress, overwrite=args.overwrite,
    )
    counts = {split: {k: v for k, v in entry.items() if k != "per_class"}
              for split, entry in manifest["splits"].items()}
    print(json.dumps({"out": args.out, "splits": counts, "failures": len(manifest["failures"])}))
    return manifest


def run(argv: Sequence[str] | None = None) -> int:
    """``python -m tfrecords_tools``: `main`, with bad input as one ``error:`` line and exit 2."""
    try:
        main(argv)
    except (ValueError, OSError) as e:
        text = str(e).strip().splitlines()
        print(f"error: {text[0] if text else type(e).__name__}", file=sys.stderr)
        return 2
    return 0
