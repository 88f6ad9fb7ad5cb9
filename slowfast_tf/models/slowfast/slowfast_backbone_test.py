import numpy as np
import pytest

from slowfast_tf.models.slowfast.slowfast_backbone import SlowFastBackbone
from slowfast_tf.testing.model_harness import run_video_backbone_test

TINY = dict(depth=18, width=8, beta_inv=4, num_frames=8, alpha=4, image_size=32)


def _clip(batch, frames, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, frames, size, size, 3)).astype("float32")


def _inputs(batch=2):
    return {"slow": _clip(batch, 2, seed=1), "fast": _clip(batch, 8, seed=2)}


def test_slowfast_backbone_harness():
    expected = {
        "slow_stem": (2, 2, 8, 8, 8), "fast_stem": (2, 8, 8, 8, 2),
        "slow_res2": (2, 2, 8, 8, 32), "fast_res2": (2, 8, 8, 8, 8),
        "slow_res3": (2, 2, 4, 4, 64), "fast_res3": (2, 8, 4, 4, 16),
        "slow_res4": (2, 2, 2, 2, 128), "fast_res4": (2, 8, 2, 2, 32),
        "slow_res5": (2, 2, 1, 1, 256), "fast_res5": (2, 8, 1, 1, 64),
    }  # fmt: skip
    backbone = run_video_backbone_test(SlowFastBackbone, TINY, _inputs(), expected)
    assert backbone.pathways == ("slow", "fast")
    # Lateral conv: C_f=2 -> 2*C_f=4 channels, kernel [5,1,1] (torch [4,2,5,1,1] transposed).
    assert tuple(backbone.get_layer("s1_fuse_conv_f2s").kernel.shape) == (5, 1, 1, 2, 4)
    # Slow res2 input = 8 slow + 4 fused channels.
    assert tuple(backbone.get_layer("s2_pathway0_res0_branch1").kernel.shape) == (1, 1, 1, 12, 32)
    # Slow res4 uses a temporal kernel of 3, res2 of 1; the fast pathway 3 everywhere.
    assert backbone.get_layer("s4_pathway0_res0_branch2_a").kernel.shape[0] == 3
    assert backbone.get_layer("s2_pathway0_res0_branch2_a").kernel.shape[0] == 1
    assert backbone.get_layer("s2_pathway1_res0_branch2_a").kernel.shape[0] == 3


@pytest.mark.parametrize(
    "arch, key, frames, out_t, stem_kt",
    [("slow", "slow", 4, 4, 1), ("c2d", "slow", 4, 2, 1), ("i3d", "slow", 4, 2, 5),
     ("fast", "fast", 8, 8, 5)],
)  # fmt: skip
def test_single_pathway_archs(arch, key, frames, out_t, stem_kt):
    backbone = SlowFastBackbone(**{**TINY, "arch": arch, "num_frames": frames})
    out = backbone({key: _clip(1, frames)})
    assert sorted(out) == sorted(f"{key}_{s}" for s in ("stem", "res2", "res3", "res4", "res5"))
    width = 2 if arch == "fast" else 8
    assert tuple(out[f"{key}_res5"].shape) == (1, out_t, 1, 1, 32 * width)
    assert backbone.get_layer("s1_pathway0_stem_conv").kernel.shape[0] == stem_kt
    if arch == "i3d":  # res3 temporal kernels alternate [3, 1]
        assert backbone.get_layer("s3_pathway0_res0_branch2_a").kernel.shape[0] == 3
        assert backbone.get_layer("s3_pathway0_res1_branch2_a").kernel.shape[0] == 1


@pytest.mark.parametrize(
    "lateral_type, fused_channels",
    [("time_strided_sample", 2), ("time_to_channel", 8), ("time_to_channel_sum", 0)],
)
def test_lateral_types_channels(lateral_type, fused_channels):
    backbone = SlowFastBackbone(**{**TINY, "lateral_type": lateral_type})
    out = backbone(_inputs(1))
    assert tuple(out["slow_res5"].shape) == (1, 2, 1, 1, 256)
    # branch1 of slow res2 sees the slow stem (8) plus the fused channels.
    assert backbone.get_layer("s2_pathway0_res0_branch1").kernel.shape[3] == 8 + fused_channels


def test_time_to_channel_layout():
    from slowfast_tf.models.slowfast.slowfast_layers import TemporalSubsample, TimeToChannel

    x = np.arange(1 * 8 * 1 * 1 * 2, dtype="float32").reshape(1, 8, 1, 1, 2)
    y = np.asarray(TimeToChannel(4)(x))
    assert y.shape == (1, 2, 1, 1, 8)
    # Channel j*C + c of slow frame t = channel c of fast frame 4t + j.
    np.testing.assert_array_equal(y[0, 1, 0, 0], x[0, 4:8, 0, 0].reshape(-1))
    np.testing.assert_array_equal(np.asarray(TemporalSubsample(4)(x))[:, :, 0, 0, 0], x[:, ::4, 0, 0, 0])


def test_fast_input_kinds():
    from slowfast_tf.models.slowfast.slowfast_layers import FastInputTransform

    x = _clip(1, 4, size=2)
    gray = np.asarray(FastInputTransform("grayscale")(x))
    np.testing.assert_allclose(gray[..., 0], x.mean(-1), rtol=1e-6)
    diff = np.asarray(FastInputTransform("time_difference")(x))
    np.testing.assert_allclose(diff[:, :3], x[:, 1:] - x[:, :-1], rtol=1e-6)
    np.testing.assert_allclose(diff[:, 3], diff[:, 2])  # last difference repeated
    gray_diff = np.asarray(FastInputTransform("grayscale_time_difference")(x))
    np.testing.assert_allclose(gray_diff[:, :3, ..., 0], np.diff(x.mean(-1), axis=1), rtol=1e-5, atol=1e-6)
    backbone = SlowFastBackbone(**{**TINY, "fast_input": "grayscale"})
    assert backbone.get_layer("s1_pathway1_stem_conv").kernel.shape[3] == 1


def test_nonlocal_and_ava_knobs():
    backbone = SlowFastBackbone(
        **TINY,
        nonlocal_locations=[[], [1], [0], []],
        nonlocal_instantiation="softmax",
        spatial_strides=(1, 2, 2, 1),
        spatial_dilations=(1, 1, 1, 2),
    )
    assert backbone.output_stride == 16
    out = backbone(_inputs(1))
    assert tuple(out["slow_res5"].shape) == (1, 2, 2, 2, 256)
    assert backbone.get_layer("s3_pathway0_nonlocal1_conv_theta").kernel.shape == (1, 1, 1, 64, 32)
    assert backbone.get_layer("s4_pathway0_nonlocal0_bn") is not None
    assert backbone.get_layer("s5_pathway0_res0_branch2_b").dilation_rate == (1, 2, 2)


def test_nonlocal_attention_matches_numpy():
    from slowfast_tf.models.slowfast.slowfast_layers import NonLocalAttention

    rng = np.random.default_rng(0)
    theta = rng.normal(size=(2, 2, 4, 4, 3)).astype("float32")
    phi = rng.normal(size=(2, 2, 2, 2, 3)).astype("float32")
    g = rng.normal(size=(2, 2, 2, 2, 3)).astype("float32")
    a = np.einsum("btc,bpc->btp", theta.reshape(2, -1, 3), phi.reshape(2, -1, 3))
    want_dot = (a / 8) @ g.reshape(2, -1, 3)
    e = np.exp(a * 3**-0.5 - (a * 3**-0.5).max(-1, keepdims=True))
    want_soft = (e / e.sum(-1, keepdims=True)) @ g.reshape(2, -1, 3)
    got_dot = np.asarray(NonLocalAttention("dot_product")([theta, phi, g]))
    got_soft = np.asarray(NonLocalAttention("softmax")([theta, phi, g]))
    np.testing.assert_allclose(got_dot, want_dot.reshape(theta.shape), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_soft, want_soft.reshape(theta.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_frames": 30}, r"multiple of alpha=4.*28, 32.*num_frames=30"),
        ({"lateral_type": "sum"}, r"lateral_type='sum'"),
        ({"fast_input": "flow"}, r"fast_input='flow'"),
        ({"norm": "group_norm"}, r"norm='group_norm'"),
        ({"arch": "x3d"}, r"arch='x3d'"),
        ({"depth": 34}, r"depth=34"),
        ({"fusion_kernel_size": 4}, r"fusion_kernel_size=4"),
        ({"nonlocal_locations": [[], [5], [], []]}, r"res3.*nonlocal_locations"),
        ({"arch": "slow", "fast_input": "grayscale"}, r"fast_input='grayscale'"),
    ],
)
def test_invalid_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlowFastBackbone(**{**TINY, **kwargs})


def test_bad_inputs_rejected():
    backbone = SlowFastBackbone(**TINY)
    with pytest.raises(ValueError, match="dict keyed by pathway"):
        backbone([_clip(1, 2), _clip(1, 8)])
    with pytest.raises(ValueError, match="keys"):
        backbone({"slow": _clip(1, 2)})
    with pytest.raises(ValueError, match="must have 8 frames"):
        backbone({"slow": _clip(1, 2), "fast": _clip(1, 6)})


def test_custom_layers_serialize_and_train():
    # time_to_channel_sum -> TimeToChannel, time_difference -> FastInputTransform, non-local ->
    # NonLocalAttention: all must survive JSON / .keras and pass gradients.
    kwargs = {
        **TINY,
        "lateral_type": "time_to_channel_sum",
        "fast_input": "time_difference",
        "nonlocal_locations": [[1], [], [], []],
        "nonlocal_instantiation": "softmax",
    }
    expected = {
        f"{p}_{s}": shape
        for p, shapes in (
            ("slow", [(2, 2, 8, 8, 8), (2, 2, 8, 8, 32), (2, 2, 4, 4, 64), (2, 2, 2, 2, 128), (2, 2, 1, 1, 256)]),
            ("fast", [(2, 8, 8, 8, 2), (2, 8, 8, 8, 8), (2, 8, 4, 4, 16), (2, 8, 2, 2, 32), (2, 8, 1, 1, 64)]),
        )
        for s, shape in zip(("stem", "res2", "res3", "res4", "res5"), shapes)
    }  # fmt: skip
    run_video_backbone_test(
        SlowFastBackbone, kwargs, _inputs(), expected,
        run_predict_test=False, run_mixed_precision_test=False,
    )  # fmt: skip
    for layer_cls, arg in (("TemporalSubsample", 4), ("TimeToChannel", 4)):
        from slowfast_tf.models.slowfast import slowfast_layers

        layer = getattr(slowfast_layers, layer_cls)(arg, name="x")
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def _fuse_layers(backbone):
    return [layer.name for layer in backbone.layers if "_fuse" in layer.name]


def test_no_lateral_has_no_fuse_layers():
    backbone = SlowFastBackbone(**{**TINY, "lateral_type": "none"})
    assert _fuse_layers(backbone) == []
    # Slow res2 sees only the slow stem's 8 channels; fast res5 is unchanged.
    assert backbone.get_layer("s2_pathway0_res0_branch1").kernel.shape[3] == 8
    out = backbone(_inputs(1))
    assert tuple(out["slow_res5"].shape) == (1, 2, 1, 1, 256)
    assert tuple(out["fast_res5"].shape) == (1, 8, 1, 1, 64)


def test_time_to_channel_sum_is_plain_reshape_and_add_when_channels_match():
    import keras

    from slowfast_tf.models.common.flops import count_flops, count_params
    from slowfast_tf.models.slowfast.slowfast_layers import TimeToChannel, fuse_fast_to_slow

    # TINY: alpha 4 * C_fast 2 == C_slow 8 (and 4 * 8 == 32 after res2...): no weights at all.
    summed = SlowFastBackbone(**{**TINY, "lateral_type": "time_to_channel_sum"})
    none = SlowFastBackbone(**{**TINY, "lateral_type": "none"})
    assert all("conv" not in n and "bn" not in n for n in _fuse_layers(summed))
    assert count_params(summed) == count_params(none)
    assert count_flops(summed, image_size=32) == count_flops(none, image_size=32)
    # Numerically slow + TimeToChannel(fast).
    slow_in, fast_in = keras.Input((2, 4, 4, 8)), keras.Input((8, 4, 4, 2))
    out = fuse_fast_to_slow(slow_in, fast_in, "time_to_channel_sum", 4, 5, 2, "batch_norm", "f")
    model = keras.Model([slow_in, fast_in], out)
    rng = np.random.default_rng(3)
    s, f = rng.normal(size=(1, 2, 4, 4, 8)), rng.normal(size=(1, 8, 4, 4, 2))
    want = s + np.asarray(TimeToChannel(4)(f.astype("float32")))
    np.testing.assert_allclose(np.asarray(model([s, f])), want, rtol=1e-6, atol=1e-6)
    # Mismatched channels (alpha 2 * 2 != 8) keep a 1x1x1 projection -> BN -> ReLU.
    mismatch = SlowFastBackbone(**{**TINY, "alpha": 2, "lateral_type": "time_to_channel_sum"})
    assert mismatch.get_layer("s1_fuse_conv_f2s").kernel.shape == (1, 1, 1, 4, 8)
    assert count_flops(mismatch, image_size=32) > count_flops(
        SlowFastBackbone(**{**TINY, "alpha": 2, "lateral_type": "none"}), image_size=32
    )


def test_half_resolution_fast_pathway():
    backbone = SlowFastBackbone(**{**TINY, "image_size": 64, "fast_resolution": "half"})
    out = backbone({"slow": _clip(1, 2, 64), "fast": _clip(1, 8, 64)})
    assert tuple(out["fast_stem"].shape) == (1, 8, 8, 8, 2)  # half of the slow stem's 16x16
    assert tuple(out["slow_stem"].shape) == (1, 2, 16, 16, 8)
    assert tuple(out["fast_res5"].shape) == (1, 8, 1, 1, 64)
    assert tuple(out["slow_res5"].shape) == (1, 2, 2, 2, 256)
    # The lateral conv runs at the fast resolution, then is upsampled x2 before the concat.
    assert backbone.get_layer("s1_fuse_upsample").size == (1, 2, 2)
    rebuilt = SlowFastBackbone.from_config(backbone.get_config())
    assert rebuilt.fast_resolution == "half"
    with pytest.raises(ValueError, match="multiple of 32.*image_size=48"):
        SlowFastBackbone(**{**TINY, "image_size": 48, "fast_resolution": "half"})
    with pytest.raises(ValueError, match="fast_resolution='half'"):
        SlowFastBackbone(**{**TINY, "arch": "slow", "num_frames": 4, "fast_resolution": "half"})


def test_half_resolution_classifier_trains_and_predicts():
    from slowfast_tf.models.slowfast.slowfast_presets import build_model

    model = build_model(
        "slowfast_r50_4x16", num_classes=3, depth=18, width=8, beta_inv=4, num_frames=8,
        alpha=4, image_size=64, fast_resolution="half",
    )  # fmt: skip
    assert model.head_pool_size == {"slow": (2, 2, 2), "fast": (8, 1, 1)}
    logits = model({"slow": _clip(2, 2, 64), "fast": _clip(2, 8, 64)})
    assert tuple(logits.shape) == (2, 3)
    assert np.all(np.isfinite(np.asarray(logits)))


def test_optical_flow_fast_input_has_two_channels():
    backbone = SlowFastBackbone(**{**TINY, "fast_input": "optical_flow"})
    assert tuple(backbone.input["fast"].shape) == (None, 8, 32, 32, 2)
    assert backbone.get_layer("s1_pathway1_stem_conv").kernel.shape[3] == 2
    flow = np.random.default_rng(0).normal(size=(1, 8, 32, 32, 2)).astype("float32")
    out = backbone({"slow": _clip(1, 2), "fast": flow})
    assert tuple(out["fast_res5"].shape) == (1, 8, 1, 1, 64)
