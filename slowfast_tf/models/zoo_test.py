"""The top-level model zoo dispatches presets of both families."""

import pytest

from slowfast_tf import models
from slowfast_tf.models import r2plus1d, slowfast


def test_preset_names_are_unique_across_families():
    families = (slowfast.PRESETS, r2plus1d.PRESETS, slowfast.detection.PRESETS)
    assert sum(len(f) for f in families) == len({name for f in families for name in f})
    assert models.list_presets() == sorted(
        {**slowfast.PRESETS, **r2plus1d.PRESETS, **slowfast.detection.PRESETS}
    )


def test_build_model_dispatches_to_each_family():
    sf = models.build_model("slowfast_r50_4x16", num_classes=5, depth=18, width=8, image_size=64)
    assert isinstance(sf.backbone, models.SlowFastBackbone)
    assert sf.output_shape == (None, 5)
    r2 = models.build_model("r2plus1d_r18", num_classes=3, base_filters=8, num_frames=8)
    assert isinstance(r2.backbone, models.R2Plus1DBackbone)
    assert r2.output_shape == (None, 3)
    assert models.get_preset("r3d_r18") is r2plus1d.PRESETS["r3d_r18"]


def test_unknown_preset_lists_both_families():
    with pytest.raises(ValueError, match="r2plus1d_r18.*Received: name='nope'"):
        models.build_model("nope")
