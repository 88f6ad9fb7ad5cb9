"""Model zoo: SlowFast family and the R(2+1)D paper family, written with keras / keras.ops only.

``build_model`` / ``build_backbone`` / ``get_preset`` / ``list_presets`` cover both families; the
family packages (``slowfast_tf.models.slowfast``, ``slowfast_tf.models.r2plus1d``) expose the same
functions for their own presets.
"""

from slowfast_tf.models import r2plus1d, slowfast
from slowfast_tf.models.common.flops import count_flops, count_params
from slowfast_tf.models.r2plus1d import R2Plus1DBackbone, R2Plus1DPreset
from slowfast_tf.models.slowfast import (
    SlowFastBackbone,
    SlowFastPreset,
    SlowFastVideoClassifier,
)

_FAMILIES = (slowfast, r2plus1d)
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


def build_model(preset_name, num_classes=400, **overrides):
    """Builds the video classifier of any preset (output: logits ``[B, num_classes]``).

    Args:
        preset_name: str, one of ``list_presets()``.
        num_classes: int, classes of the projection (400 = Kinetics-400).
        **overrides: backbone or classifier kwargs of that family (e.g. ``depth=18, width=8``).
    """
    return _family(preset_name).build_model(preset_name, num_classes=num_classes, **overrides)


__all__ = [
    "PRESETS",
    "R2Plus1DBackbone",
    "R2Plus1DPreset",
    "SlowFastBackbone",
    "SlowFastPreset",
    "SlowFastVideoClassifier",
    "build_backbone",
    "build_model",
    "count_flops",
    "count_params",
    "get_preset",
    "list_presets",
]
