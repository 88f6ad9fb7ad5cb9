"""SlowFast family: SlowFast, Slow-only, Fast-only, C2D, I3D (+ non-local variants)."""

from slowfast_tf.models.slowfast.slowfast_backbone import ARCHS, SlowFastBackbone
from slowfast_tf.models.slowfast.slowfast_layers import (
    FAST_INPUT_KINDS,
    LATERAL_TYPES,
    NONLOCAL_INSTANTIATIONS,
)
from slowfast_tf.models.slowfast.slowfast_presets import (
    PRESETS,
    SlowFastPreset,
    build_backbone,
    build_model,
    get_preset,
    list_presets,
)
from slowfast_tf.models.slowfast.slowfast_video_classifier import SlowFastVideoClassifier

__all__ = [
    "ARCHS",
    "FAST_INPUT_KINDS",
    "LATERAL_TYPES",
    "NONLOCAL_INSTANTIATIONS",
    "PRESETS",
    "SlowFastBackbone",
    "SlowFastPreset",
    "SlowFastVideoClassifier",
    "build_backbone",
    "build_model",
    "get_preset",
    "list_presets",
]
