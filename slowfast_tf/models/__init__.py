"""Model zoo: SlowFast family and the R(2+1)D paper family, written with keras / keras.ops only."""

from slowfast_tf.models.common.flops import count_flops, count_params
from slowfast_tf.models.slowfast import (
    PRESETS,
    SlowFastBackbone,
    SlowFastPreset,
    SlowFastVideoClassifier,
    build_backbone,
    build_model,
    get_preset,
    list_presets,
)

__all__ = [
    "PRESETS",
    "SlowFastBackbone",
    "SlowFastPreset",
    "SlowFastVideoClassifier",
    "build_backbone",
    "count_flops",
    "count_params",
    "build_model",
    "get_preset",
    "list_presets",
]
