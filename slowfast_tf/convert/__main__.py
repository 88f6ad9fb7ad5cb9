"""Convert a PySlowFast / PyTorchVideo / Caffe2 checkpoint to Keras ``.weights.h5``.

Usage::

    python -m slowfast_tf.convert --from pytorchvideo SLOWFAST_8x8_R50.pyth \\
        --preset slowfast_r50_8x8 --out slowfast_r50_8x8.weights.h5 --verify

``--num-classes N`` (different from the checkpoint's class count) keeps the backbone and leaves
the head at its initialisation, for fine-tuning. ``--verify`` runs the PyTorchVideo reference on
a random clip and prints per-stage max differences, the logit difference and top-1 agreement;
the exit status is 1 when the logits differ by more than ``--tolerance`` relative to the logit
scale. Errors (unreadable or unsafe file, unmatched tensors, NaN/Inf weights without
``--allow-non-finite``) print one message and exit with status 2. ``--out`` is written to a
temporary file and renamed, so an interrupted run never leaves a partial weights file.
"""

import argparse
import ast
import os
import re
import sys
import time

from slowfast_tf import clip_spec
from slowfast_tf.convert import checkpoints, name_maps
from slowfast_tf.utils import fileio

_EXIT_ERROR = 2
_EXIT_PARITY = 1


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m slowfast_tf.convert",
        description="Convert PySlowFast / PyTorchVideo / Caffe2 SlowFast weights to Keras.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=checkpoints.SOURCES,
        help="checkpoint format: PySlowFast .pyth, PyTorchVideo hub .pyth or Caffe2 .pkl",
    )
    parser.add_argument("checkpoint", help="path of the checkpoint file")
    parser.add_argument("--preset", required=True, help="slowfast_tf preset, e.g. slowfast_r50_8x8")
    parser.add_argument("--out", required=True, help="output Keras weights file (*.weights.h5)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes of the Keras head; defaults to the checkpoint's. A different value "
        "drops the checkpoint head (fine-tuning).",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="build_model override, e.g. train_crop_size=256 (repeatable; VALUE is a Python "
        "literal). Only for checkpoints whose architecture differs from the preset.",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="REGEX",
        help="source tensors to drop on purpose (full-match regex on the checkpoint's or the "
        "PySlowFast name, repeatable), e.g. extra blobs of an unusual Caffe2 file. They are "
        "listed as ignored; everything else must still match.",
    )
    parser.add_argument(
        "--verify", action="store_true", help="compare against the PyTorchVideo reference"
    )
    parser.add_argument(
        "--verify-crop", type=int, default=None, help="clip side for --verify (default: 224)"
    )
    parser.add_argument(
        "--allow-non-finite",
        action="store_true",
        help="convert a checkpoint whose weights hold NaN/Inf (refused by default; the model "
        "will predict NaN) and print a WARNING naming the tensors",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --verify clip")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="--verify fails above this max|logit diff| / max|logit|",
    )
    return parser


def _parse_overrides(items):
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--override must look like KEY=VALUE. Received: {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value  # A bare string such as norm=sync_batch_norm.
    return overrides


def _apply_skips(patterns, state, unmapped, ignored):
    """Moves tensors whose name full-matches one of ``patterns`` to ``ignored``."""
    regexes = [re.compile(p) for p in patterns]

    def skip(name):
        return any(r.fullmatch(name) for r in regexes)

    ignored = list(ignored) + [n for n in unmapped if skip(n)] + [n for n in state if skip(n)]
    return (
        {n: v for n, v in state.items() if not skip(n)},
        [n for n in unmapped if not skip(n)],
        ignored,
    )


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    return _EXIT_ERROR


def convert(args):
    """Runs the conversion described by parsed ``args``; returns the exit status."""
    if not args.out.endswith(".weights.h5"):
        return _fail(f"--out must end with '.weights.h5' (Keras weights). Received: {args.out}")
    if args.num_classes is not None and args.num_classes < 1:
        return _fail(f"--num-classes must be positive. Received: {args.num_classes}")
    if os.path.isdir(args.out):
        return _fail(f"--out is a directory, expected a file path. Received: {args.out}")
    try:  # Fail before the slow work when --out cannot be created.
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    except OSError as e:
        return _fail(f"cannot write --out {args.out}: {e.strerror or e}")
    overrides = _parse_overrides(args.override)
    started = time.time()
    # Read the checkpoint before importing TensorFlow: a bad file fails in a second.
    state, unmapped, ignored = checkpoints.read_checkpoint(args.checkpoint, args.source)
    state, unmapped, ignored = _apply_skips(args.skip, state, unmapped, ignored)
    head = state.get(name_maps.HEAD_WEIGHT)
    ckpt_classes = None if head is None else int(head.shape[0])
    num_classes = args.num_classes or ckpt_classes or 400
    print(
        f"Read {len(state)} tensors from {args.checkpoint} ({args.source}); "
        f"checkpoint classes: {ckpt_classes}"
    )

    from slowfast_tf.utils import tf_startup

    tf_startup.quiet_tf_startup()  # Before TF is imported: no duplicated start-up/cuInit noise.
    from slowfast_tf.convert import keras_loader

    if not args.allow_non_finite:  # Refuse NaN/Inf before building the model (seconds, not minutes).
        head_dropped = args.num_classes is not None and args.num_classes != ckpt_classes
        keras_loader.check_finite(
            {n: v for n, v in state.items() if not (head_dropped and n.startswith("head."))}
        )
    from slowfast_tf.models import build_model

    model = build_model(args.preset, num_classes=num_classes, **overrides)
    report = keras_loader.load_pyslowfast_state_into(
        model,
        state,
        source=args.source,
        unmapped=unmapped,
        ignored=ignored,
        allow_head_mismatch=args.num_classes is not None,
        allow_non_finite=args.allow_non_finite,
        progress=sys.stderr.isatty(),
    )
    print(report)
    for message in report.messages:
        if message.startswith("WARNING"):
            print(message, file=sys.stderr)
    try:
        # Temp file + rename: a kill mid-write leaves the previous --out file intact.
        with fileio.atomic_path(args.out) as tmp:
            model.save_weights(tmp)
        # X.clip_spec.json next to X.weights.h5: the preset's clip spec, which export.py and the
        # other tools read instead of asking for clip flags.
        sidecar = clip_spec.from_model(model).save(clip_spec.sidecar_path(args.out))
    except OSError as e:
        return _fail(f"cannot write --out {args.out}: {e.strerror or e}")
    print(f"Wrote {args.out} and {sidecar} ({time.time() - started:.1f} s)")

    if not args.verify:
        return 0
    from slowfast_tf.convert import verify

    try:
        parity = verify.verify_against_reference(
            model,
            state,
            crop_size=args.verify_crop,
            seed=args.seed,
            compare_head=not report.head_dropped,
        )
    except ImportError as e:
        print(f"--verify skipped: {e}")
        return 0
    if parity is None:
        print(f"--verify skipped: PyTorchVideo has no reference model for preset {args.preset}")
        return 0
    print(parity.format())
    relative = parity.logits_relative_diff
    if relative is None:
        relative = parity.worst_endpoint_relative_diff
    if relative > args.tolerance:
        print(f"PARITY FAILED: relative difference {relative:.2e} > {args.tolerance:.0e}")
        return _EXIT_PARITY
    print(f"Parity OK: relative difference {relative:.2e} <= {args.tolerance:.0e}")
    return 0


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return convert(args)
    except (checkpoints.CheckpointError, checkpoints.ConversionError, ImportError) as e:
        return _fail(str(e))
    except (ValueError, re.error) as e:  # e.g. an unknown preset name, a bad --skip regex
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
