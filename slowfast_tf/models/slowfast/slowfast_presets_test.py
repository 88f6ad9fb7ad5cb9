import pytest

from slowfast_tf.models.slowfast import PRESETS, build_model, get_preset, list_presets

REQUIRED = [
    "slowfast_r50_4x16", "slowfast_r50_8x8", "slowfast_r101_8x8", "slowfast_r101_50_50_8x8",
    "slowfast_r101_50_50_16x8", "slowfast_nln_r50_8x8", "slowfast_nln_r101_50_50_16x8",
    "slow_r50_4x16", "slow_r50_8x8", "fast_r50_32x2", "c2d_r50_8x8", "i3d_r50_8x8",
    "i3d_nln_r50_8x8", "i3d_r101_8x8",
]  # fmt: skip


def test_required_presets_exist():
    assert set(REQUIRED) <= set(list_presets())
    assert list_presets() == sorted(PRESETS)


def test_preset_metadata():
    sf = get_preset("slowfast_r50_8x8")
    assert sf.frames == {"slow": 8, "fast": 32}
    assert (sf.alpha, sf.sampling_rate, sf.train_crop_size, sf.test_crop_size) == (4, 2, 224, 256)
    assert get_preset("slowfast_r50_4x16").frames == {"slow": 4, "fast": 32}
    assert get_preset("slowfast_r101_50_50_16x8").frames == {"slow": 16, "fast": 64}
    assert get_preset("slow_r50_4x16").frames == {"slow": 4}
    assert get_preset("fast_r50_32x2").frames == {"fast": 32}
    # Fusion kernel 7 only for the R50 8x8-style recipes (PySlowFast configs), 5 elsewhere.
    for name, preset in PRESETS.items():
        if preset.backbone.get("arch") == "slowfast":
            want = 7 if name in ("slowfast_r50_8x8", "slowfast_r50_16x8") else 5
            assert preset.backbone["fusion_kernel_size"] == want, name
    # slow T x tau = 64 frames of context for every Kinetics preset
    for name in ("slowfast_r50_4x16", "slowfast_r50_8x8", "slow_r50_4x16", "i3d_r50_8x8"):
        preset = get_preset(name)
        assert preset.num_frames * preset.sampling_rate == 64, name


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match=r"Valid presets: \[.*slowfast_r50_8x8.*name='slowfast_r18'"):
        build_model("slowfast_r18")


def test_build_model_tiny_overrides():
    model = build_model(
        "slowfast_nln_r50_8x8", num_classes=7, depth=18, width=8, num_frames=8, image_size=32,
        nonlocal_locations=[[], [1], [], []], dropout=0.2,
    )  # fmt: skip
    assert model.output.shape == (None, 7)
    assert model.dropout == 0.2
    assert model.backbone.fusion_kernel_size == 5
    assert model.head_pool_size == {"slow": (2, 1, 1), "fast": (8, 1, 1)}
    assert model.get_layer("slowfast_backbone") is model.backbone
    assert model.backbone.get_layer("s3_pathway0_nonlocal1_conv_out") is not None
