"""Convert a PySlowFast / PyTorchVideo / Caffe2 checkpoint to Keras ``.weights.h5``.

Usage::

    python -m slowfast_tf.convert --source pytorchvideo SLOWFAST_8x8_R50.pyth \\
        --preset slowfast_r50_8x8 --output_file slowfast_r50_8x8.weights.h5 --verify

``--num_classes N`` (different from the checkpoint's class count) keeps the backbone and leaves
the head at its initialisation, for fine-tuning. ``--verify`` runs the PyTorchVideo reference on
a random clip and prints per-stage max differences, the logit difference and top-1 agreement;
the exit status is 1 when the logits differ by more than ``--tolerance`` relative to the logit
scale. Errors (unreadable or unsafe file, unmatched tensors, NaN/Inf weights without
``--allow_non_finite``) print one message and exit with status 2. ``--output_file`` is written to a
temporary file and renamed, so an interrupted run never leaves a partial weights file.
"""

import os
import re
import sys
import time
import types

from absl import flags

from slowfast_tf import clip_spec
from slowfast_tf.convert import checkpoints, name_maps
from slowfast_tf.utils import cli_flags, fileio

_EXIT_ERROR = 2
_EXIT_PARITY = 1


PROG = "python -m slowfast_tf.convert"
# Deprecated spellings (accepted for one release; kebab-case is rewritten generically and
# `--override KEY=VALUE` is folded into --model_overrides).
RENAMES = {"--from": "--source", "--out": "--output_file"}


def define_flags(fv: flags.FlagValues) -> None:
    f = {"flag_values": fv}
    flags.DEFINE_enum(
        "source", None, list(checkpoints.SOURCES),
        "Checkpoint format: PySlowFast .pyth, PyTorchVideo hub .pyth or Caffe2 .pkl.", **f,
    )
    flags.DEFINE_string("preset", None, "slowfast_tf preset, e.g. slowfast_r50_8x8.", **f)
    flags.DEFINE_string("output_file", None, "Output Keras weights file (*.weights.h5).", **f)
    flags.DEFINE_integer(
        "num_classes", None,
        "Classes of the Keras head; defaults to the checkpoint's. A different value drops the "
        "checkpoint head (fine-tuning).", **f,
    )
    flags.DEFINE_string(
        "model_overrides", "{}",
        'JSON dict of build_model overrides, e.g. \'{"train_crop_size": 256}\'. Only for '
        "checkpoints whose architecture differs from the preset.", **f,
    )
    flags.DEFINE_multi_string(
        "skip", [],
        "Source tensors to drop on purpose (full-match regex on the checkpoint's or the "
        "PySlowFast name, repeatable), e.g. extra blobs of an unusual Caffe2 file. They are "
        "listed as ignored; everything else must still match.", **f,
    )
    flags.DEFINE_bool("verify", False, "Compare against the PyTorchVideo reference.", **f)
    flags.DEFINE_integer("verify_crop", None, "Clip side for --verify (default: 224).", **f)
    flags.DEFINE_bool(
        "allow_non_finite", False,
        "Convert a checkpoint whose weights hold NaN/Inf (refused by default; the model will "
        "predict NaN) and print a WARNING naming the tensors.", **f,
    )
    flags.DEFINE_integer("seed", 0, "Seed of the --verify clip.", **f)
    flags.DEFINE_float(
        "tolerance", 1e-4, "--verify fails above this max|logit diff| / max|logit|.", **f
    )
    flags.mark_flags_as_required(["source", "preset", "output_file"], flag_values=fv)


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
    """Runs the conversion described by parsed flags ``args``; returns the exit status."""
    out = args.output_file
    if not out.endswith(".weights.h5"):
        return _fail(f"--output_file must end with '.weights.h5' (Keras weights). Received: {out}")
    if args.num_classes is not None and args.num_classes < 1:
        return _fail(f"--num_classes must be positive. Received: {args.num_classes}")
    if os.path.isdir(out):
        return _fail(f"--output_file is a directory, expected a file path. Received: {out}")
    try:  # Fail before the slow work when --output_file cannot be created.
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    except OSError as e:
        return _fail(f"cannot write --output_file {out}: {e.strerror or e}")
    overrides = cli_flags.json_dict(args.model_overrides, "model_overrides")
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

    tf_startup.prefer_onednn()  # Before TF is imported: oneDNN CPU kernels (see tf_startup).
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
        # Temp file + rename: a kill mid-write leaves the previous --output_file intact.
        with fileio.atomic_path(out) as tmp:
            model.save_weights(tmp)
        # X.clip_spec.json next to X.weights.h5: the preset's clip spec, which export.py and the
        # other tools read instead of asking for clip flags.
        sidecar = clip_spec.from_model(model).save(clip_spec.sidecar_path(out))
    except OSError as e:
        return _fail(f"cannot write --output_file {out}: {e.strerror or e}")
    print(f"Wrote {out} and {sidecar} ({time.time() - started:.1f} s)")

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
    try:
        args, positional = cli_flags.parse(
            argv, define_flags, PROG, RENAMES,
            "Convert PySlowFast / PyTorchVideo / Caffe2 SlowFast weights to Keras: "
            f"{PROG} CHECKPOINT --source=... --preset=... --output_file=....",
            max_positional=1,
        )
        if len(positional) != 1:
            return _fail("give one checkpoint path (the positional argument). Received: none")
        return convert(types.SimpleNamespace(**args.flag_values_dict(), checkpoint=positional[0]))
    except (checkpoints.CheckpointError, checkpoints.ConversionError, ImportError) as e:
        return _fail(str(e))
    except (ValueError, re.error) as e:  # e.g. an unknown preset name, a bad flag or --skip regex
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
