"""TensorFlow Serving side files: versioned export dirs, `models.config`, batching, warm-up.

Layout written by `export.py` (what `tensorflow_model_server --model_config_file` expects):

```
<base>/models.config                 ModelServerConfig text proto, one entry per model name
<base>/batching_parameters.txt       BatchingParameters text proto (--enable_batching)
<base>/<name>/<version>/             SavedModel; the server serves the highest numeric version
    saved_model.pb, variables/, assets/labels.txt
    assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog (replayed at load time)
```
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from slowfast_tf.utils import fileio

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# A model name is one directory under the model repository and one path segment of TF Serving's
# REST URL (`/v1/models/([^/:]+)...`): letters, digits, '_', '-', '.', starting with a letter or
# digit, so '.', '..', hidden names, separators, ':' and whitespace are all refused.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")
# TF Serving parses version directories as int64.
MAX_VERSION = 2**63 - 1


def validate_model_name(name: str) -> str:
    """Returns `name` if it is a safe model name (see `_NAME`), else raises `ValueError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "`model_name` must be 1-255 characters of letters, digits, '_', '-', '.', starting "
            f"with a letter or digit (no '/', no '..'). Received: model_name={name!r}"
        )
    return name


def validate_version(version) -> int:
    """Returns `version` if it is an int in `[1, 2**63 - 1]` (TF Serving's int64 versions)."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ValueError(
            f"`version` must be a positive integer (at most 2**63 - 1). Received: version={version!r}"
        )
    return version


def existing_versions(model_base: str) -> list[int]:
    """Numeric version sub-directories of `<base>/<name>` (what TF Serving would consider)."""
    if not tf.io.gfile.isdir(model_base):
        return []
    return sorted(
        int(d.rstrip("/"))
        for d in tf.io.gfile.listdir(model_base)
        if d.rstrip("/").isdigit() and tf.io.gfile.isdir(os.path.join(model_base, d))
    )


def next_version(model_base: str) -> int:
    """`max(existing) + 1`, or 1 for a new model."""
    versions = existing_versions(model_base)
    return versions[-1] + 1 if versions else 1


def resolve_version_dir(model_base: str, version: int | None) -> tuple[int, str]:
    """Returns `(version, <model_base>/<version>)`; auto-increments when `version` is None / 0."""
    if version is None or (version == 0 and not isinstance(version, bool)):
        version = next_version(model_base)
    validate_version(version)
    path = os.path.join(model_base, str(version))
    if tf.io.gfile.exists(path):
        raise ValueError(
            f"Version {version} already exists; pick another or omit it to auto-increment. "
            f"Received: version={version}, path={path!r}"
        )
    return version, path


def staging_dir(model_base: str, version: int) -> str:
    """A non-numeric sibling dir: TF Serving ignores it, so a half-written export is never loaded."""
    return os.path.join(model_base, f".tmp-{version}")


def write_models_config(path: str, models: dict[str, str]) -> str:
    """Writes a `ModelServerConfig` text proto serving the latest version of each model.

    Args:
        path: output file (e.g. `<base>/models.config`).
        models: `{model_name: base_path as the server sees it}` (e.g. `/models/slowfast`).
            Merged with entries already in `path`, so several models can share one config.
    """
    config = model_server_config_pb2.ModelServerConfig()
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            text_format.Parse(f.read(), config)
    entries = {c.name: c for c in config.model_config_list.config}
    for name, base_path in models.items():
        validate_model_name(name)
        entry = entries.get(name)
        if entry is None:
            entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = base_path
        entry.model_platform = "tensorflow"
        # Serve only the newest version; a new export replaces the old one without a restart.
        entry.model_version_policy.latest.num_versions = 1
    fileio.atomic_write_text(path, text_format.MessageToString(config))
    return path


def write_batching_parameters(
    path: str,
    max_batch_size: int = 8,
    batch_timeout_micros: int = 5000,
    num_batch_threads: int = 4,
    max_enqueued_batches: int = 100,
    pad_variable_length_inputs: bool = False,
) -> str:
    """Writes the `BatchingParameters` text proto for `--batching_parameters_file`.

    The proto is not shipped in tensorflow-serving-api, so it is written as text; field names are
    those of `tensorflow_serving/servables/tensorflow/session_bundle_config.proto`.

    Server-side batching concatenates requests along dim 0, so requests merged into one batch
    must agree on `[T, H, W]`. `pad_variable_length_inputs` would zero-pad differing ones, but
    black borders and extra black frames would then enter the resize and the temporal resampling
    and silently change the prediction, so it is off: a mismatch is reported as an error instead.
    Our client always sends `[1, T, 256, 256, 3]` (short side 256, center square).
    """
    for name, value in [
        ("max_batch_size", max_batch_size),
        ("num_batch_threads", num_batch_threads),
        ("max_enqueued_batches", max_enqueued_batches),
    ]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if not isinstance(batch_timeout_micros, int) or batch_timeout_micros < 0:
        raise ValueError(
            f"`batch_timeout_micros` must be an int >= 0. Received: {batch_timeout_micros!r}"
        )
    text = (
        f"max_batch_size {{ value: {max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
        f"num_batch_threads {{ value: {num_batch_threads} }}\n"
        f"max_enqueued_batches {{ value: {max_enqueued_batches} }}\n"
        f"pad_variable_length_inputs: {str(pad_variable_length_inputs).lower()}\n"
    )
    fileio.atomic_write_text(path, text)
    return path


def predict_request(
    model_name: str, inputs: dict[str, np.ndarray], signature_name: str = "serving_default"
) -> predict_pb2.PredictRequest:
    """A `PredictRequest` with numpy inputs converted by `tf.make_tensor_proto`."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    )
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def write_warmup_requests(
    export_dir: str, requests: list[predict_pb2.PredictRequest]
) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` (TFRecord of `PredictionLog`).

    TF Serving replays each record when it loads the version, before it is marked available, so
    the first user request does not pay for graph optimisation and kernel initialisation.
    """
    if not requests:
        raise ValueError("Need at least one warm-up request. Received: requests=[]")
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with fileio.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir: str) -> list[predict_pb2.PredictRequest]:
    """Parses the warm-up file back into `PredictRequest`s (used by tests and smoke checks)."""
    out = []
    for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        out.append(log.predict_log.request)
    return out
