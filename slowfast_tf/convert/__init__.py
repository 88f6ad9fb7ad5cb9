"""PySlowFast / PyTorchVideo / Caffe2 checkpoints -> Keras SlowFast weights.

Library API (torch is imported lazily, only for ``.pyth`` files and the torch reference)::

    from slowfast_tf.convert import convert_checkpoint
    from slowfast_tf.models import build_model

    model = build_model("slowfast_r50_8x8", num_classes=400)
    report = convert_checkpoint("SLOWFAST_8x8_R50.pyth", "pytorchvideo", model)
    model.save_weights("slowfast_r50_8x8.weights.h5")

Fine-tuning on another label set: build the model with the new ``num_classes`` and pass
``allow_head_mismatch=True``; the head stays at its initialisation and the report says so.
Command line: ``python -m slowfast_tf.convert --help``.
"""

from slowfast_tf.convert.checkpoints import (
    SOURCES,
    CheckpointError,
    ConversionError,
    read_caffe2_checkpoint,
    read_checkpoint,
    read_torch_checkpoint,
)
from slowfast_tf.convert.keras_loader import (
    ConversionReport,
    checkpoint_num_classes,
    convert_checkpoint,
    keras_to_pyslowfast_state,
    load_pyslowfast_state_into,
    load_torch_state_dict_into,
)

__all__ = [
    "SOURCES",
    "CheckpointError",
    "ConversionError",
    "ConversionReport",
    "checkpoint_num_classes",
    "convert_checkpoint",
    "keras_to_pyslowfast_state",
    "load_pyslowfast_state_into",
    "load_torch_state_dict_into",
    "read_caffe2_checkpoint",
    "read_checkpoint",
    "read_torch_checkpoint",
]
