"""Model zoo: SlowFast family and the R(2+1)D paper family, written with keras / keras.ops only.

``build_model`` / ``build_backbone`` / ``get_preset`` / ``list_presets`` cover every family; the
family packages (``slowfast_tf.models.slowfast``, ``slowfast_tf.models.r2plus1d``) expose the same
functions for their own presets, and ``slowfast_tf.models.slowfast.detection`` for the AVA
detectors (``SlowFastDetector``).
"""

from slowfast_tf.models import r2plus1d, slowfast
from slowfast_tf.models.common.flops import count_flops, count_params
from slowfast_tf.models.r2plus1d import R2Plus1DBackbone, R2Plus1DPreset
from slowfast_tf.models.slowfast import (
    SlowFastBackbone,
    SlowFastDetector,
    SlowFastDetectorPreset,
    SlowFastPreset,
    SlowFastVideoClassifier,
)
from slowfast_tf.models.slowfast import detection as slowfast_detection

_FAMILIES = (slowfast, r2plus1d, slowfast_detection)
# Preset names are unique across families (a test checks it), so one flat dict serves lookups.
PRESETS = {name: preset for family in _FAMILIES for name, preset in family.PRESETS.items()}


def list_presets():
    """Returns the sorted preset names of every family."""
    return sorted(PRESETS)


def _family(name):
    for family in _FAMILIES:
        if name in family.PRESETS:
            return family
    raise ValueError(f"Unknown preset. Valid presets: {list_presets()}. Received: name={name!r}")


def get_preset(name):
    """Returns the preset record (``SlowFastPreset`` or ``R2Plus1DPreset``) called ``name``."""
    return _family(name).get_preset(name)


def build_backbone(preset_name, **overrides):
    """Builds the backbone of any preset; ``overrides`` replace backbone kwargs."""
    return _family(preset_name).build_backbone(preset_name, **overrides)


def build_model(preset_name, num_classes=None, **overrides):
    """Builds the model of any preset: a video classifier (logits ``[B, num_classes]``) or, for
    the AVA presets, a ``SlowFastDetector`` (logits ``[B, max_boxes, num_classes]``).

    Args:
        preset_name: str, one of ``list_presets()``.
        num_classes: None or int, classes of the projection; None = the family's default
            (400 = Kinetics-400 for classifiers, 80 = AVA for detectors).
        **overrides: backbone or head kwargs of that family (e.g. ``depth=18, width=8``).
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return _family(preset_name).build_model(preset_name, **overrides)


__all__ = [
    "PRESETS",
    "R2Plus1DBackbone",
    "R2Plus1DPreset",
    "SlowFastBackbone",
    "SlowFastDetector",
    "SlowFastDetectorPreset",
    "SlowFastPreset",
    "SlowFastVideoClassifier",
    "build_backbone",
    "build_model",
    "count_flops",
    "count_params",
    "get_preset",
    "list_presets",
]
