"""End-to-end export for TF Serving: versioned SavedModel + warm-up + server config files."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from slowfast_tf.serving import payloads, signatures, tfserving
from slowfast_tf.utils import fileio


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Paths written by `export_for_serving`."""

    version: int
    export_dir: str
    models_config: str
    batching_parameters: str
    warmup_file: str | None


def warmup_requests(
    model_name: str, config: signatures.ServingConfig, frame_size: tuple[int, int] | None = None
) -> list:
    """One request per signature, shaped like what the client sends.

    The client sends `[1, T, S, S, 3]` (short side S, center square), so the warm-up does too.

    Args:
        model_name: name in `models.config`.
        config: the export's `ServingConfig` (T and short side of its clip spec).
        frame_size: `(H, W)` of the warm-up frames; default `(short_side, short_side)`.
    """
    h, w = frame_size or (config.clip.short_side, config.clip.short_side)
    # Fixed seed: the warm-up file is part of the artifact and should be reproducible.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(1, config.clip.num_frames, h, w, 3), dtype=np.uint8)
    examples = np.array([payloads.encode_sequence_example(frames[0])], dtype=object)
    return [
        tfserving.predict_request(
            model_name, {signatures.FRAMES_KEY: frames}, signatures.DEFAULT_SIGNATURE
        ),
        tfserving.predict_request(
            model_name, {signatures.EXAMPLES_KEY: examples}, signatures.EXAMPLES_SIGNATURE
        ),
        tfserving.predict_request(
            model_name,
            {signatures.METADATA_INPUT_KEY: np.zeros([1], np.int32)},
            signatures.METADATA_SIGNATURE,
        ),
    ]


def export_for_serving(
    model,
    export_base: str,
    model_name: str,
    config: signatures.ServingConfig,
    labels: list[str],
    version: int | None = None,
    serving_base_path: str | None = None,
    warmup: bool = True,
    batching: dict | None = None,
    metadata: dict | None = None,
) -> ExportResult:
    """Writes `<export_base>/<model_name>/<version>/` and the TF Serving config files.

    The SavedModel is written to a hidden staging dir and renamed into place once complete
    (warm-up included), so a server polling `<export_base>/<model_name>` never loads half a model.

    Args:
        model: Keras classifier.
        export_base: root dir of the model repository (mounted as `/models` in Docker).
        model_name: the name clients use (`ModelSpec.name`, `/v1/models/<name>`).
        config: `ServingConfig`.
        labels: class names, one per class.
        version: int, or None / 0 to use `max(existing) + 1`.
        serving_base_path: `base_path` written to models.config, as the server sees it (default:
            the absolute local path; with the Docker snippet use `/models/<model_name>`).
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        batching: kwargs for `tfserving.write_batching_parameters`.
        metadata: JSON-able dict stored as `assets.extra/export_config.json` (e.g. the flags).

    Returns:
        `ExportResult`.
    """
    tfserving.validate_model_name(model_name)
    model_base = os.path.join(export_base, model_name)
    version, final_dir = tfserving.resolve_version_dir(model_base, version)
    stage = tfserving.staging_dir(model_base, version)
    if tf.io.gfile.exists(stage):
        tf.io.gfile.rmtree(stage)
    tf.io.gfile.makedirs(model_base)
    signatures.save_serving_model(model, stage, config, labels)
    warmup_file = None
    if warmup:
        tfserving.write_warmup_requests(stage, warmup_requests(model_name, config))
        warmup_file = os.path.join(final_dir, tfserving.WARMUP_FILE)
    info = {"model_name": model_name, "version": version, **config.to_dict()}
    info.update(metadata or {})
    tf.io.gfile.makedirs(os.path.join(stage, "assets.extra"))
    fileio.atomic_write_text(
        os.path.join(stage, "assets.extra", "export_config.json"),
        json.dumps(info, indent=2, sort_keys=True, default=str),
    )
    tf.io.gfile.rename(stage, final_dir)

    models_config = tfserving.write_models_config(
        os.path.join(export_base, "models.config"),
        {model_name: serving_base_path or os.path.abspath(model_base)},
    )
    batching_file = tfserving.write_batching_parameters(
        os.path.join(export_base, "batching_parameters.txt"), **(batching or {})
    )
    return ExportResult(version, final_dir, models_config, batching_file, warmup_file)


def variables_size_bytes(export_dir: str) -> int:
    """Total bytes under `<export_dir>/variables` (what the weights cost on disk)."""
    total = 0
    for root, _, files in tf.io.gfile.walk(os.path.join(export_dir, "variables")):
        for name in files:
            total += tf.io.gfile.stat(os.path.join(root, name)).length
    return total


def weight_bytes(model) -> int:
    """Bytes of all the model's weights (trainable and BN statistics) in their dtypes."""
    return int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights))
