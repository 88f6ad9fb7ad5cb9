"""Serving layer: SavedModel signatures, TF Serving files, client and a local test server.

    from slowfast_tf.serving import ServingConfig, export_for_serving
    config = serving_config_from_model(model)          # T, alpha, pathways from the model
    export_for_serving(model, "/tmp/models", "slowfast", config, labels)

Command lines: ``python export.py ...`` and ``python -m slowfast_tf.serving.client ...``.
"""

from slowfast_tf.serving.export_lib import ExportResult, export_for_serving
from slowfast_tf.serving.signatures import (
    ServingConfig,
    build_serving_module,
    read_labels,
    save_serving_model,
    serving_config_from_model,
)

__all__ = [
    "ExportResult",
    "ServingConfig",
    "build_serving_module",
    "export_for_serving",
    "read_labels",
    "save_serving_model",
    "serving_config_from_model",
]
