"""SlowFast family: SlowFast, Slow-only, Fast-only, C2D, I3D (+ non-local variants).

``PRESETS`` / ``build_model`` here are the Kinetics classifiers; the AVA detectors live in
``slowfast_tf.models.slowfast.detection`` (same functions, ``SlowFastDetector`` models).
"""

from slowfast_tf.models.slowfast import slowfast_detector_presets as detection
from slowfast_tf.models.slowfast.slowfast_backbone import ARCHS, SlowFastBackbone
from slowfast_tf.models.slowfast.slowfast_detector import SlowFastDetector
from slowfast_tf.models.slowfast.slowfast_detector_presets import SlowFastDetectorPreset
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
    "SlowFastDetector",
    "SlowFastDetectorPreset",
    "SlowFastPreset",
    "SlowFastVideoClassifier",
    "build_backbone",
    "build_model",
    "detection",
    "get_preset",
    "list_presets",
]
