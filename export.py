r"""Export a SlowFast classifier as a versioned SavedModel for TensorFlow Serving.

    python export.py --preset=slowfast_r50_8x8 --num_classes=400 \
        --weights=/ckpt/model.weights.h5 --labels_file=k400_labels.txt \
        --export_base=/tmp/models --model_name=slowfast

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
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from slowfast_tf.utils import tf_startup  # noqa: E402

tf_startup.quiet_tf_startup()  # Before TF is imported: no duplicated start-up/cuInit noise.

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from slowfast_tf.data import get_data_config  # noqa: E402
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
    flags.DEFINE_string("export_base", None, "Model repository root (/models in Docker).", **fv)
    flags.DEFINE_string("model_name", "slowfast", "ModelSpec.name, /v1/models/<name>.", **fv)
    flags.DEFINE_integer("version", 0, "Version number; 0 = max(existing) + 1.", **fv)
    flags.DEFINE_integer("num_frames", None, "Clip length before packing; default: model.", **fv)
    flags.DEFINE_integer("alpha", None, "Fast/slow frame ratio; default: from the model.", **fv)
    flags.DEFINE_integer(
        "short_side", None,
        "Test-time short side; default: the preset's test crop (SlowFast 256), 128 for R(2+1)D.",
        **fv,
    )
    flags.DEFINE_integer(
        "crop_size", None, "Center crop; default: the preset's test crop, else 256.", **fv
    )
    flags.DEFINE_list("mean", None, "RGB mean in [0, 1]; default: the data preset's.", **fv)
    flags.DEFINE_list("std", None, "RGB std in [0, 1]; default: the data preset's.", **fv)
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
        "slowfast_tf.data preset giving sampling_rate / target_fps / mean / std for "
        "serve_examples; default: derived from --preset (slowfast_r50_8x8 -> slowfast_8x8).",
        **fv,
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


def load_model(f: flags.FlagValues) -> keras.Model:
    """The model named by --preset (+ --weights) or --model_file."""
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
    if f.weights:  # checked before the (slow) model build
        _check_file("--weights", f.weights, {".weights.h5": _HDF5_MAGIC, ".keras": _ZIP_MAGIC})
    model = presets[f.preset][1](f.preset, num_classes=f.num_classes)
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


def config_overrides(f: flags.FlagValues) -> dict:
    """ServingConfig fields from the flags, the model preset and its data preset."""
    from slowfast_tf.models import r2plus1d

    out = {}
    preset = _presets().get(f.preset, (None, None))[0] if f.preset else None
    if preset is not None:
        out["crop_size"] = preset.test_crop_size
        out["sampling_rate"] = preset.sampling_rate
        # R(2+1)D (VMZ): frames resized to 128x171, then a 112 crop. SlowFast: short side = crop.
        r2p1d = f.preset in r2plus1d.PRESETS
        out["short_side"] = 128 if r2p1d else preset.test_crop_size
        if f.preset.endswith("_torchvision"):
            out["mean"], out["std"] = r2plus1d.TORCHVISION_MEAN, r2plus1d.TORCHVISION_STD
    data_preset = f.data_preset or f.preset
    if data_preset:
        try:
            data = get_data_config(data_preset)
        except ValueError:
            if f.data_preset:
                raise
            data = None  # no data twin (e.g. R(2+1)D): keep the values above
        if data is not None:
            out.update(sampling_rate=data.sampling_rate, target_fps=data.target_fps,
                       mean=data.mean, std=data.std)
    for name in ("num_frames", "alpha", "short_side", "crop_size", "top_k", "max_frame_pixels",
                 "max_request_frames", "max_decoded_bytes"):
        if getattr(f, name) is not None:
            out[name] = getattr(f, name)
    for name in ("mean", "std"):
        if getattr(f, name) is not None:
            out[name] = tuple(float(v) for v in getattr(f, name))
    if "crop_size" in out and "short_side" not in out:
        out["short_side"] = out["crop_size"]
    return out


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
    del argv
    f = flag_values
    if not f.export_base:
        raise ValueError("--export_base is required. Received: export_base=None")
    tfserving.validate_model_name(f.model_name)  # before the model is built
    if f.version:
        tfserving.validate_version(f.version)
    devices.log_run_context("export.py")
    model = load_model(f)
    if hasattr(model, "max_boxes"):  # An AVA detector: frames + boxes signature.
        from slowfast_tf.serving import detection_signatures

        print(detection_signatures.export_from_flags(model, f))
        return
    overrides = config_overrides(f)
    config = signatures.serving_config_from_model(model, **overrides)
    logging.info("Serving config: %s", config)
    probe = model.build_eval_model() if hasattr(model, "build_eval_model") else model
    out = probe.output
    num_classes = (out["probabilities"] if isinstance(out, dict) else out).shape[-1]
    labels = signatures.read_labels(f.labels_file, num_classes)
    result = export_lib.export_for_serving(
        bn_folding.fold_batch_norm(model) if f.fold_batch_norm else model,
        f.export_base,
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
    define_flags()
    app.run(cli_main)
