"""Command line of ``python -m tfrecords_tools``: ``convert``, ``convert-ava`` and ``inspect``.

Each subcommand has its own absl flags (``python -m tfrecords_tools convert --help``); old
spellings (``--out``, ``--short-side`` ...) are accepted for one release with a warning
(``slowfast_tf/utils/cli_flags.py``).

Bad input (a malformed listing line, a missing or empty input, an unwritable ``--output_dir``, a
corrupt shard given to ``inspect``, a rerun whose plan differs) prints one ``error: ...`` line
and exits with status 2."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence

from absl import flags

from slowfast_tf.utils import cli_flags
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


def load_items(args: flags.FlagValues):
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
        raise ValueError(
            f"--output_dir cannot be written ({e.strerror or e}). Received: output_dir={out!r}"
        ) from None


PROG = "python -m tfrecords_tools"
COMMANDS = ("convert", "convert-ava", "inspect")
# Deprecated spellings (accepted for one release; kebab-case is rewritten generically).
RENAMES = {"--out": "--output_dir", "--no-progress": "--noprogress"}


def define_convert_flags(fv: flags.FlagValues) -> None:
    """Flags of ``convert``: videos -> sharded TFRecords of SequenceExamples."""
    f = {"flag_values": fv}
    flags.DEFINE_string(
        "input", None, "Kinetics CSV, PySlowFast list file (path label) or folder-per-class root.", **f
    )
    flags.DEFINE_enum("input_format", "auto", INPUT_FORMATS, "Format of --input.", **f)
    flags.DEFINE_string("output_dir", None, "Output directory.", **f)
    flags.DEFINE_string(
        "split", None, "Split name (list/folder input; for a Kinetics CSV: keep only this split).", **f
    )
    flags.DEFINE_string("video_root", None, "Kinetics: folder holding the clips.", **f)
    flags.DEFINE_string("path_prefix", "", "list: prefix joined to every path.", **f)
    flags.DEFINE_string(
        "classes", None, "Classes file (one name per line); default OUTPUT_DIR/classes.txt or derived.", **f
    )
    flags.DEFINE_float("target_fps", 30.0, "Resample to this fps (0 keeps).", **f)
    flags.DEFINE_integer("short_side", 256, "Resize short side (0 keeps).", **f)
    flags.DEFINE_integer("jpeg_qscale", 3, "MJPEG quality 2 (best)..31.", **f)
    flags.DEFINE_float("max_seconds", 0.0, "Truncate videos (0 = all).", **f)
    flags.DEFINE_float(
        "max_duration_seconds", 1800.0,
        "Refuse (list in failures.tsv) videos longer than this; 0 = no limit.", **f,
    )
    flags.DEFINE_integer(
        "max_frames", 54_000, "Refuse videos giving more output frames; 0 = no limit.", **f
    )
    flags.DEFINE_float(
        "max_gap_seconds", 10.0,
        "Refuse videos with a longer jump between frame timestamps; 0 = no limit.", **f,
    )
    flags.DEFINE_bool(
        "overwrite", False,
        "When OUTPUT_DIR holds a split converted from a different input list or settings, delete "
        "its shards and convert it again (default: refuse).", **f,
    )
    flags.DEFINE_integer("num_shards", 0, "Shards per split (0 = auto).", **f)
    flags.DEFINE_integer("videos_per_shard", 64, "Videos per shard when --num_shards is 0.", **f)
    flags.DEFINE_integer(
        "workers", os.cpu_count() or 1, "Encoding processes (0 = in-process).", **f
    )
    flags.DEFINE_integer("seed", 0, "Seed of the shard assignment.", **f)
    flags.DEFINE_enum("runner", "local", ["local", "beam"], "Where to convert.", **f)
    flags.DEFINE_bool(
        "dry_run", False, "beam: check the pipeline options after -- and print the plan only.", **f
    )
    flags.DEFINE_bool("progress", True, "Show a progress bar.", **f)
    flags.DEFINE_float("delay_per_video", 0.0, "Internal (tests): sleep per video.", **f)
    flags.mark_flags_as_required(["input", "output_dir"], flag_values=fv)


def define_inspect_flags(fv: flags.FlagValues) -> None:
    """Flags of ``inspect PATTERN``: counts, shapes and sample frames of converted shards."""
    f = {"flag_values": fv}
    flags.DEFINE_integer("num_records", 4, "Records to show.", **f)
    flags.DEFINE_integer("frames", 6, "Frames per contact-sheet row.", **f)
    flags.DEFINE_string("sheet", None, "Write a PNG contact sheet here.", **f)
    flags.DEFINE_integer("max_records", 0, "Count at most this many (0 = all).", **f)
    flags.DEFINE_integer("ascii_width", 32, "0 disables the ASCII preview.", **f)


def parse_command(argv: Sequence[str]) -> tuple[str, flags.FlagValues, list[str]]:
    """``[COMMAND, *flags]`` -> ``(command, flag values, positional args)``."""
    from tfrecords_tools import ava

    command = argv[0] if argv else None
    if command in ("-h", "--help", "--helpfull"):
        print(f"usage: {PROG} {{{','.join(COMMANDS)}}} [flags]  ({PROG} COMMAND --help)")
        raise SystemExit(0)
    defines = {
        "convert": (define_convert_flags, "Videos -> sharded TFRecords of SequenceExamples.", 0),
        "convert-ava": (ava.define_flags, "AVA annotations + videos/frames -> segment records.", 0),
        "inspect": (define_inspect_flags, 'inspect PATTERN: glob of shards, e.g. "OUT/train-*.tfrecord".', 1),
    }
    if command not in defines:
        raise ValueError(f"the first argument must be one of {', '.join(COMMANDS)}. Received: {command!r}")
    define, description, positional = defines[command]
    fv, rest = cli_flags.parse(
        argv[1:], define, f"{PROG} {command}", RENAMES, description, max_positional=None
    )
    extra = rest[: rest.index("--")] if "--" in rest else rest
    if len(extra) != positional:
        what = "one shard pattern" if positional else "no positional arguments"
        raise ValueError(f"{command} takes {what}. Received: {extra}")
    return command, fv, rest


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, args, rest = parse_command(argv)
    beam_args: list[str] = []
    if "--" in rest:  # everything after -- goes to Beam's PipelineOptions
        beam_args = rest[rest.index("--") + 1 :]
    if command == "convert-ava":
        from tfrecords_tools.ava import run

        return run(args)
    if command == "inspect":
        from tfrecords_tools.inspect_records import inspect

        return inspect(rest[0], args.num_records, args.frames, args.sheet,
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
        check_out_dir(args.output_dir)
    if args.runner == "beam":
        from tfrecords_tools.beam_runner import check_pipeline_options, run_beam
        from tfrecords_tools.convert import LabelMap

        plan = check_pipeline_options(beam_args)  # install hint / missing options, before work
        if args.dry_run:
            plan["videos"] = dict(sorted(Counter(item.split for item in items).items()))
            print(json.dumps(plan, default=str))
            return plan
        os.makedirs(args.output_dir, exist_ok=True)
        label_map = LabelMap.resolve(args.output_dir, items, args.classes)
        return run_beam(items, args.output_dir, settings, label_map.classes, args.num_shards,
                        beam_args)

    from tfrecords_tools.convert import convert

    manifest = convert(
        items, args.output_dir, settings, classes_file=args.classes, num_shards=args.num_shards,
        videos_per_shard=args.videos_per_shard, workers=args.workers, seed=args.seed,
        progress=args.progress, overwrite=args.overwrite,
    )
    counts = {split: {k: v for k, v in entry.items() if k != "per_class"}
              for split, entry in manifest["splits"].items()}
    print(json.dumps({"out": args.output_dir, "splits": counts,
                      "failures": len(manifest["failures"])}))
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
