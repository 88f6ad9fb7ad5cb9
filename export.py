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

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from slowfast_tf.data import get_data_config  # noqa: E402
from slowfast_tf.serving import export_lib, signatures  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("preset", None, "Model preset name (slowfast_tf.models.list_presets()).")
flags.DEFINE_integer("num_classes", 400, "Number of classes of the preset's head.")
flags.DEFINE_string("weights", None, "Weights for the preset (.weights.h5 or a .keras file).")
flags.DEFINE_string("model_file", None, "A whole saved model (.keras) instead of --preset.")
flags.DEFINE_string("labels_file", None, "One class name per line; default: the class ids.")
flags.DEFINE_string("export_base", None, "Model repository root (mounted at /models in Docker).")
flags.DEFINE_string("model_name", "slowfast", "Name clients use (ModelSpec.name, /v1/models/..).")
flags.DEFINE_integer("version", 0, "Version number; 0 = max(existing) + 1.")
flags.DEFINE_integer("num_frames", None, "Clip length before packing; default: from the model.")
flags.DEFINE_integer("alpha", None, "Fast/slow frame ratio; default: from the model.")
flags.DEFINE_integer("short_side", 256, "Test-time short side (PySlowFast TEST_CROP_SIZE).")
flags.DEFINE_integer("crop_size", 256, "Center-crop size.")
flags.DEFINE_integer("top_k", 5, "Number of top_k_ids / top_k_labels.")
flags.DEFINE_string(
    "data_preset", None,
    "slowfast_tf.data preset giving sampling_rate / target_fps / mean / std for serve_examples; "
    "default: derived from --preset (e.g. slowfast_r50_8x8 -> slowfast_8x8), else Kinetics.",
)
flags.DEFINE_string(
    "serving_base_path", None,
    "base_path in models.config as the server sees it; default: the local absolute path. "
    "With the Docker command in slowfast_tf/serving/README.md use /models/<model_name>.",
)
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
flags.DEFINE_integer("max_batch_size", 8, "Server-side batching: largest merged batch.")
flags.DEFINE_integer("batch_timeout_micros", 5000, "Server-side batching: wait for a batch.")
flags.DEFINE_integer("num_batch_threads", 4, "Server-side batching: parallel batches.")


def load_model() -> keras.Model:
    if bool(FLAGS.preset) == bool(FLAGS.model_file):
        raise ValueError(
            "Pass exactly one of --preset or --model_file. "
            f"Received: preset={FLAGS.preset!r}, model_file={FLAGS.model_file!r}"
        )
    if FLAGS.model_file:
        return keras.saving.load_model(FLAGS.model_file, compile=False)
    from slowfast_tf.models import build_model

    model = build_model(FLAGS.preset, num_classes=FLAGS.num_classes)
    if FLAGS.weights:
        model.load_weights(FLAGS.weights)
    else:
        logging.warning("No --weights given: exporting randomly initialised weights.")
    return model


def main(argv):
    del argv
    if not FLAGS.export_base:
        raise ValueError("--export_base is required. Received: export_base=None")
    model = load_model()
    overrides = {
        k: getattr(FLAGS, k)
        for k in ("num_frames", "alpha", "short_side", "crop_size", "top_k")
        if getattr(FLAGS, k) is not None
    }
    data_preset = FLAGS.data_preset or FLAGS.preset
    if data_preset:
        try:
            data = get_data_config(data_preset)
        except ValueError:
            if FLAGS.data_preset:
                raise
            data = None  # a preset without a data twin: keep the Kinetics defaults
        if data is not None:
            overrides = {
                "sampling_rate": data.sampling_rate, "target_fps": data.target_fps,
                "mean": data.mean, "std": data.std, **overrides,
            }
    config = signatures.serving_config_from_model(model, **overrides)
    logging.info("Serving config: %s", config)
    probe = model.build_eval_model() if hasattr(model, "build_eval_model") else model
    out = probe.output
    num_classes = (out["probabilities"] if isinstance(out, dict) else out).shape[-1]
    labels = signatures.read_labels(FLAGS.labels_file, num_classes)
    result = export_lib.export_for_serving(
        model,
        FLAGS.export_base,
        FLAGS.model_name,
        config,
        labels,
        version=FLAGS.version or None,
        serving_base_path=FLAGS.serving_base_path,
        warmup=FLAGS.warmup,
        batching={
            "max_batch_size": FLAGS.max_batch_size,
            "batch_timeout_micros": FLAGS.batch_timeout_micros,
            "num_batch_threads": FLAGS.num_batch_threads,
        },
        metadata={"flags": FLAGS.flags_into_string()},
    )
    size = export_lib.variables_size_bytes(result.export_dir)
    logging.info(
        "Exported version %d to %s (variables %.2f MB = %.3fx the weight bytes). Config: %s",
        result.version, result.export_dir, size / 1e6,
        size / max(export_lib.weight_bytes(model), 1), result.models_config,
    )
    print(result.export_dir)


if __name__ == "__main__":
    app.run(main)
