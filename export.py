r"""Export a SlowFast classifier as a versioned SavedModel for TensorFlow Serving.

    python export.py --preset=slowfast_r50_8x8 --num_classes=400 \
        --weights=/ckpt/model.weights.h5 --labels_file=k400_labels.txt \
        --output_dir=/tmp/models --model_name=slowfast

The clip settings (frames, sampling rate, short side, crop, mean/std) come with the model: a
`.keras` file carries its clip spec, a converted `X.weights.h5` has `X.clip_spec.json` next to it,
else the preset's named clip spec is used. `--clip_spec`, `--num_frames`, `--test_short_side`,
`--test_crop`, ... only override them. The SavedModel returns its clip spec from the `metadata`
signature (and `assets/clip_spec.json`), so the client needs no clip flags either.

writes

    /tmp/models/slowfast/<version>/      SavedModel (serving_default: uint8 frames,
                                         serve_examples: serialized SequenceExamples)
    /tmp/models/models.config            --model_config_file for tensorflow_model_server
    /tmp/models/batching_parameters.txt  --batching_parameters_file

`<version>` auto-increments (`max(existing) + 1`) unless `--version` is given. See
`slowfast_tf/serving/README.md` for the Docker command and the client.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from slowfast_tf.utils import tf_startup  # noqa: E402

tf_startup.prefer_onednn()  # Before TF is imported: oneDNN CPU kernels (see tf_startup).
tf_startup.quiet_tf_startup()  # Before TF is imported: no duplicated start-up/cuInit noise.

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from slowfast_tf import clip_spec as clip_spec_lib  # noqa: E402
from slowfast_tf.clip_spec import ClipSpec, get_clip_spec  # noqa: E402
from slowfast_tf.models.common import bn_folding  # noqa: E402
from slowfast_tf.serving import export_lib, signatures, tfserving  # noqa: E402
from slowfast_tf.training import devices  # noqa: E402

_ZIP_MAGIC = b"PK\x03\x04"  # a .keras file is a zip archive
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # .weights.h5


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the export flags (at run time, not import time: train.py shares some names)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("preset", None, "Model preset (slowfast_tf.models.list_presets()).", **fv)
    flags.DEFINE_integer("num_classes", 400, "Number of classes of the preset's head.", **fv)
    flags.DEFINE_string("weights", None, "Weights for --preset (.weights.h5 or .keras).", **fv)
    flags.DEFINE_string("model_file", None, "A whole saved model (.keras) instead.", **fv)
    flags.DEFINE_string("labels_file", None, "One class name per line; default: ids.", **fv)
    flags.DEFINE_string("output_dir", None, "Model repository root (/models in Docker).", **fv)
    flags.DEFINE_string("model_name", "slowfast", "ModelSpec.name, /v1/models/<name>.", **fv)
    flags.DEFINE_integer("version", 0, "Version number; 0 = max(existing) + 1.", **fv)
    flags.DEFINE_string(
        "model_overrides", "{}",
        "JSON dict of build_model overrides for --preset (same syntax as train.py), e.g. tiny "
        'sizes: \'{"depth": 18, "width": 8}\'.', **fv,
    )
    # Clip settings: read from the model (.keras), the weights' sidecar X.clip_spec.json or the
    # preset's named clip spec; these flags only override them.
    flags.DEFINE_string(
        "clip_spec", None,
        "Named clip spec (slowfast_tf.clip_spec.CLIP_SPECS) to serve with instead of the "
        "model's own; default: the model's.", **fv,
    )
    flags.DEFINE_integer("num_frames", None, "Override: clip length (the fast pathway's T).", **fv)
    flags.DEFINE_integer("sampling_rate", None, "Override: frame stride at --target_fps.", **fv)
    flags.DEFINE_float("target_fps", None, "Override: the fps --sampling_rate refers to.", **fv)
    flags.DEFINE_integer("alpha", None, "Override: fast/slow frame ratio.", **fv)
    flags.DEFINE_integer("test_short_side", None, "Override: short side before the crop.", **fv)
    flags.DEFINE_integer("test_crop", None, "Override: centre crop side.", **fv)
    flags.DEFINE_list("mean", None, "Override: RGB mean in [0, 1].", **fv)
    flags.DEFINE_list("std", None, "Override: RGB std in [0, 1].", **fv)
    flags.DEFINE_integer("short_side", None, "Deprecated spelling of --test_short_side.", **fv)
    flags.DEFINE_integer("crop_size", None, "Deprecated spelling of --test_crop.", **fv)
    flags.DEFINE_integer("top_k", 5, "Number of top_k_ids / top_k_labels.", **fv)
    limits = {f.name: f.default for f in dataclasses.fields(signatures.ServingConfig)}
    flags.DEFINE_integer(
        "max_frame_pixels", limits["max_frame_pixels"],
        "Request limit, checked in the graph: H * W of one frame (JPEG headers for examples).", **fv
    )
    flags.DEFINE_integer(
        "max_request_frames", limits["max_request_frames"],
        "Request limit: frames per request (batch * T, or JPEGs over all examples).", **fv,
    )
    flags.DEFINE_integer(
        "max_decoded_bytes", limits["max_decoded_bytes"],
        "Request limit: uint8 bytes of the request's frames once decoded.", **fv,
    )
    flags.DEFINE_string(
        "data_preset", None,
        "AVA detectors: the AVA data preset (default: the model's). Classifiers: deprecated "
        "spelling of --clip_spec.", **fv,
    )
    flags.DEFINE_string(
        "serving_base_path", None,
        "base_path in models.config as the server sees it; default: the local absolute path. "
        "With the Docker command in slowfast_tf/serving/README.md use /models/<model_name>.",
        **fv,
    )
    flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.", **fv)
    flags.DEFINE_bool(
        "fold_batch_norm", True,
        "Fold BatchNorm into the preceding convs (same outputs, fewer ops; classifiers).", **fv,
    )
    flags.DEFINE_integer("max_batch_size", 8, "Server-side batching: largest batch.", **fv)
    flags.DEFINE_integer("batch_timeout_micros", 5000, "Batching: wait for a batch.", **fv)
    flags.DEFINE_integer("num_batch_threads", 4, "Batching: parallel batches.", **fv)


def _presets():
    """`{name: (preset, build_model)}` over both model families."""
    from slowfast_tf.models import r2plus1d, slowfast

    out = {name: (p, slowfast.build_model) for name, p in slowfast.PRESETS.items()}
    out.update({name: (p, r2plus1d.build_model) for name, p in r2plus1d.PRESETS.items()})
    return out


def _model_overrides(f: flags.FlagValues) -> dict:
    try:
        value = json.loads(f.model_overrides or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--model_overrides must be a JSON dict. Received: {f.model_overrides!r}"
        ) from e
    if not isinstance(value, dict):
        raise ValueError(f"--model_overrides must be a JSON dict. Received: {value!r}")
    return value


def load_model(f: flags.FlagValues) -> keras.Model:
    """The model named by --preset (+ --weights, --model_overrides) or --model_file.

    The model carries its clip spec: a .keras file's own, else the sidecar next to --weights
    (``X.weights.h5`` -> ``X.clip_spec.json``), else the preset's named spec.
    """
    if bool(f.preset) == bool(f.model_file):
        raise ValueError(
            "Pass exactly one of --preset or --model_file. "
            f"Received: preset={f.preset!r}, model_file={f.model_file!r}"
        )
    presets = _presets()  # importing both families also registers them for .keras loading
    if f.model_file:
        _check_file("--model_file", f.model_file, {".keras": _ZIP_MAGIC})
        return _load("--model_file", f.model_file, keras.saving.load_model, compile=False)
    if f.preset not in presets:
        raise ValueError(f"Unknown preset. Valid: {sorted(presets)}. Received: preset={f.preset!r}")
    overrides = _model_overrides(f)
    if f.weights:  # checked before the (slow) model build
        _check_file("--weights", f.weights, {".weights.h5": _HDF5_MAGIC, ".keras": _ZIP_MAGIC})
        sidecar = clip_spec_lib.load_sidecar(f.weights)
        if sidecar is not None:
            logging.info("Clip spec from %s.", clip_spec_lib.sidecar_path(f.weights))
            overrides.setdefault("clip_spec", sidecar.to_dict())
    model = presets[f.preset][1](f.preset, num_classes=f.num_classes, **overrides)
    if f.weights:
        _load("--weights", f.weights, model.load_weights)
    else:
        logging.warning("No --weights given: exporting randomly initialised weights.")
    return model


def _check_file(flag: str, path: str, magic_by_suffix: dict[str, bytes]) -> None:
    """Refuses a missing file, a wrong extension or content that is not that format."""
    suffix = next((x for x in magic_by_suffix if path.endswith(x)), None)
    if suffix is None:
        raise ValueError(
            f"{flag} must end with {' or '.join(magic_by_suffix)}. Received: {flag}={path!r}"
        )
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise ValueError(f"{flag} does not exist or is not a file. Received: {flag}={path!r}")
    with tf.io.gfile.GFile(path, "rb") as fh:
        head = fh.read(len(magic_by_suffix[suffix]))
    if head != magic_by_suffix[suffix]:
        kind = "zip archive" if suffix == ".keras" else "HDF5 file"
        raise ValueError(
            f"{flag} is not a {suffix} file (not a {kind}: corrupt or truncated download?). "
            f"Received: {flag}={path!r}"
        )


def _load(flag: str, path: str, loader, **kwargs):
    """`loader(path)`, with any failure turned into one line that names the flag."""
    try:
        return loader(path, **kwargs)
    except Exception as e:  # h5py, zipfile and Keras raise many types
        detail = " ".join(str(e).split()) or "no message"
        if len(detail) > 400:
            detail = detail[:400] + " ..."
        raise ValueError(
            f"Could not load {flag} ({type(e).__name__}: {detail}). Received: {flag}={path!r}"
        ) from e


def _deprecated(f: flags.FlagValues, old: str, new: str):
    value = getattr(f, old)
    if value is not None:
        logging.warning("--%s is deprecated (removed in the next release); use --%s.", old, new)
        if getattr(f, new) is not None and getattr(f, new) != value:
            raise ValueError(f"--{old} and --{new} disagree. Received: {old}={value!r}, "
                             f"{new}={getattr(f, new)!r}")
    return getattr(f, new) if getattr(f, new) is not None else value


def clip_spec_from_flags(f: flags.FlagValues, model_spec: ClipSpec) -> ClipSpec:
    """The export's clip spec: the model's (or the named --clip_spec), with the flags applied."""
    name = _deprecated(f, "data_preset", "clip_spec")
    spec = get_clip_spec(name) if name else model_spec
    values = {n: getattr(f, n) for n in ("num_frames", "sampling_rate", "target_fps", "alpha")}
    values["test_short_side"] = _deprecated(f, "short_side", "test_short_side")
    values["test_crop"] = _deprecated(f, "crop_size", "test_crop")
    for n in ("mean", "std"):
        if getattr(f, n) is not None:
            values[n] = tuple(float(v) for v in getattr(f, n))
    return spec.override(**values)


def serving_overrides(f: flags.FlagValues) -> dict:
    """`ServingConfig` fields other than the clip spec: top_k and the request limits."""
    return {n: getattr(f, n) for n in ("top_k", "max_frame_pixels", "max_request_frames",
                                       "max_decoded_bytes")}


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
    del argv
    f = flag_values
    if not f.output_dir:
        raise ValueError("--output_dir is required. Received: output_dir=None")
    tfserving.validate_model_name(f.model_name)  # before the model is built
    if f.version:
        tfserving.validate_version(f.version)
    devices.log_run_context("export.py")
    model = load_model(f)
    if hasattr(model, "max_boxes"):  # An AVA detector: frames + boxes signature.
        from slowfast_tf.serving import detection_signatures

        print(detection_signatures.export_from_flags(model, f))
        return
    clip = clip_spec_from_flags(f, signatures.clip_spec_of_model(model))
    config = signatures.serving_config_from_model(model, clip=clip, **serving_overrides(f))
    logging.info("Serving config: %s", config)
    probe = model.build_eval_model() if hasattr(model, "build_eval_model") else model
    out = probe.output
    num_classes = (out["probabilities"] if isinstance(out, dict) else out).shape[-1]
    labels = signatures.read_labels(f.labels_file, num_classes)
    result = export_lib.export_for_serving(
        bn_folding.fold_batch_norm(model) if f.fold_batch_norm else model,
        f.output_dir,
        f.model_name,
        config,
        labels,
        version=f.version or None,
        serving_base_path=f.serving_base_path,
        warmup=f.warmup,
        batching={
            "max_batch_size": f.max_batch_size,
            "batch_timeout_micros": f.batch_timeout_micros,
            "num_batch_threads": f.num_batch_threads,
        },
        metadata={"flags": f.flags_into_string()},
    )
    size = export_lib.variables_size_bytes(result.export_dir)
    logging.info(
        "Exported version %d to %s (variables %.2f MB = %.3fx the weight bytes). Config: %s",
        result.version, result.export_dir, size / 1e6,
        size / max(export_lib.weight_bytes(model), 1), result.models_config,
    )
    print(result.export_dir)


def cli_main(argv, flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """`main` for the command line: a bad flag or input file is one `error:` line, exit code 2."""
    try:
        main(argv, flag_values)
    except (ValueError, OSError, tf.errors.OpError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from slowfast_tf.utils import cli_flags

    define_flags()
    # --export_base was renamed --output_dir (docs/DESIGN.md, "Command lines"); one release of grace.
    old = {"--export_base": "--output_dir"}
    app.run(cli_main, argv=[sys.argv[0], *cli_flags.rewrite_deprecated(sys.argv[1:], old, "export.py")])
