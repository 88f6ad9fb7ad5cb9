"""Video data layer: TFRecord layout, tf.data pipeline, PackPathway, synthetic dataset.

Public API::

    from slowfast_tf.data import DataConfig, get_data_config, build_dataset
    config = get_data_config("slowfast_8x8", num_classes=400)
    ds = build_dataset("/data/k400/train-*.tfrecord", config, "train", batch_size=8)
"""

from slowfast_tf.data.config import DATA_PRESETS, DataConfig, get_data_config
from slowfast_tf.data.input_pipeline import (
    CorruptRecordCounter,
    build_dataset,
    label_tensor,
    make_distributed_dataset,
    preprocess_test_view,
    preprocess_train,
    spatial_test_view,
)
from slowfast_tf.data.records import make_sequence_example, parse_sequence_example
from slowfast_tf.data.transforms import pack_pathways, slow_indices

__all__ = [
    "DATA_PRESETS",
    "CorruptRecordCounter",
    "DataConfig",
    "build_dataset",
    "get_data_config",
    "label_tensor",
    "make_distributed_dataset",
    "make_sequence_example",
    "pack_pathways",
    "parse_sequence_example",
    "preprocess_test_view",
    "preprocess_train",
    "slow_indices",
    "spatial_test_view",
]
