"""Serving layer: SavedModel signatures, TF Serving files and client (the local stand-in server for
tests lives in slowfast_tf/testing/local_server.py).

    from slowfast_tf.serving import ServingConfig, export_for_serving
    config = serving_config_from_model(model)          # the clip spec the model carries
    export_for_serving(model, "/tmp/models", "slowfast", config, labels)

Command lines: ``python export.py ...`` and ``python -m slowfast_tf.serving.client ...``.
"""

import importlib

# Attributes load lazily (PEP 562): `python -m slowfast_tf.serving.client` imports this package
# first, and must be able to quiet TensorFlow's start-up before TensorFlow is imported.
_LAZY = {
    "ExportResult": "export_lib",
    "export_for_serving": "export_lib",
    "ServingConfig": "signatures",
    "build_serving_module": "signatures",
    "read_labels": "signatures",
    "save_serving_model": "signatures",
    "serving_config_from_model": "signatures",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"slowfast_tf.serving.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'slowfast_tf.serving' has no attribute {name!r}")


__all__ = [
    "ExportResult",
    "ServingConfig",
    "build_serving_module",
    "export_for_serving",
    "read_labels",
    "save_serving_model",
    "serving_config_from_model",
]
