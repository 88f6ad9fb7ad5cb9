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


def test_every_preset_names_a_clip_spec_with_its_frames():
    """Presets link to clip specs by name (no pattern matching); the named spec gives the
    preset's frames, and a classifier preset resolves to the data preset of that name."""
    from slowfast_tf.clip_spec import get_clip_spec
    from slowfast_tf.data import get_data_config
    from slowfast_tf.training.detection import build_data_config, is_detector

    for name in models.list_presets():
        preset = models.get_preset(name)
        spec = get_clip_spec(preset.clip_spec)
        assert spec.frames_per_pathway() == preset.frames, name
        assert (preset.sampling_rate, preset.test_crop_size) == (spec.sampling_rate, spec.test_crop)
        if is_detector(name):
            assert build_data_config(name, None, 80, {}).clip_spec == spec, name
        else:
            assert get_data_config(name).clip_spec == spec, name
    assert get_data_config("slowfast_nln_r101_50_50_16x8").frames_per_pathway() == {
        "slow": 16, "fast": 64
    }
    assert get_data_config("r2plus1d_r18_torchvision").mean[0] == 0.43216
