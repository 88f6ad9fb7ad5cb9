"""Tests for the R(2+1)D paper family backbone (shapes, layer kinds, parameter counts, errors)."""

import keras
import numpy as np
import pytest

from slowfast_tf.models.common.flops import count_flops
from slowfast_tf.models.r2plus1d.r2plus1d_backbone import (
    STAGE_DEPTHS,
    VARIANTS,
    R2Plus1DBackbone,
    _block_mid_channels,
    factorized_mid_channels,
    num_temporal_strides,
    output_frames,
    variant_conv_types,
)
from slowfast_tf.models.r2plus1d.r2plus1d_presets import build_backbone
from slowfast_tf.testing.model_harness import run_video_backbone_test

TINY = {"depth": 10, "base_filters": 4, "num_frames": 8}

# Final T for an L = 8 clip, read off the paper's Fig. 2 / VMZ's ``final_temporal_kernel``
# (MCx: clip/8 * [8, 8, 4, 2][x - 2]; rMCx: clip/8 * [1, 1, 2, 4][x - 2]).
FINAL_T_AT_8 = {
    "r2d": 1, "fr2d": 8, "r3d": 1, "r2plus1d": 1,
    "mc2": 8, "mc3": 8, "mc4": 4, "mc5": 2,
    "rmc2": 1, "rmc3": 1, "rmc4": 2, "rmc5": 4,
}

# Trainable parameters of the R18 backbones for L = 16 plus a 400-way classifier
# (512 * 400 + 400 = 205,200), i.e. the numbers a torch ``sum(p.numel())`` reports.
R18_PARAMS_K400 = {
    "r2d": 11_522_832,  # stem 16x7x7; 11,447,568 for L = 8 (the stem is 3*L*49*64 weights)
    "fr2d": 11_381_712,
    "r3d": 33_371_472,  # == torchvision r3d_18 (documented 33,371,472)
    "mc2": 11_400_528,
    "mc3": 11_695_440,  # == torchvision mc3_18 (documented 11,695,440)
    "mc4": 12_727_632,
    "mc5": 16_856_400,
    "rmc2": 33_352_656,
    "rmc3": 33_057_744,
    "rmc4": 32_025_552,
    "rmc5": 27_896_784,
    "r2plus1d": 33_370_839,
}
TORCHVISION_R2PLUS1D_18 = 31_505_325  # documented torchvision r2plus1d_18 parameter count
# torchvision's documented GFLOPS (multiply-adds of convs + fc, no BN) at 16x112x112.
TORCHVISION_GFLOPS_16x112 = {"r3d": 40.70, "mc3": 43.34}
K400_HEAD = 512 * 400 + 400


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _expected_params(variant, depth, num_frames, mid_rule="paper"):
    """Independent count from the paper's Table 1: conv weights + BN (gamma, beta) per layer."""
    stem, *stages = variant_conv_types(variant)

    def conv(kind, cin, cout, d, mid=None):
        if kind == "3d":
            return 3 * d * d * cin * cout
        if kind == "2d":
            return d * d * cin * cout
        # (2+1)D: spatial conv + inner BN + temporal conv.
        return d * d * cin * mid + 2 * mid + 3 * mid * cout

    if stem == "collapse":
        total = num_frames * 49 * 3 * 64
    elif stem == "2plus1d":
        total = conv(stem, 3, 64, 7, mid=45)
    else:
        total = conv(stem, 3, 64, 7) if stem == "2d" else 3 * 49 * 3 * 64
    total += 2 * 64
    cin = 64
    for stage, (blocks, kind) in enumerate(zip(STAGE_DEPTHS[depth], stages)):
        cout = 64 * 2**stage
        for block in range(blocks):
            mid_a = factorized_mid_channels(cin, cout, 3, 3)
            mid_b = mid_a if mid_rule == "torchvision" else factorized_mid_channels(cout, cout, 3, 3)
            total += conv(kind, cin, cout, 3, mid_a) + 2 * cout
            total += conv(kind, cout, cout, 3, mid_b) + 2 * cout
            if block == 0 and stage > 0:
                total += cin * cout + 2 * cout  # 1x1x1 projection shortcut + BN
            cin = cout
    return total


def test_conv_types_follow_paper_convention():
    # MCx: 3D in conv1 .. conv_{x-1}, 2D from conv_x; rMCx the reverse.
    assert variant_conv_types("mc3") == ("3d", "3d", "2d", "2d", "2d")
    assert variant_conv_types("mc5") == ("3d", "3d", "3d", "3d", "2d")
    assert variant_conv_types("rmc3") == ("2d", "2d", "3d", "3d", "3d")
    assert variant_conv_types("rmc2") == ("2d", "3d", "3d", "3d", "3d")
    assert variant_conv_types("r2d")[0] == "collapse"
    assert variant_conv_types("fr2d") == ("2d",) * 5
    assert num_temporal_strides("r3d") == 3
    assert num_temporal_strides("mc4") == 1
    assert num_temporal_strides("rmc4") == 2
    assert {v: output_frames(v, 8) for v in VARIANTS} == FINAL_T_AT_8


def test_mid_channels_formula():
    # floor(t d^2 Nin Nout / (d^2 Nin + t Nout)), paper Eq. 1.
    assert factorized_mid_channels(64, 64, 3, 3) == 144
    assert factorized_mid_channels(64, 128, 3, 3) == 230
    assert factorized_mid_channels(128, 128, 3, 3) == 288
    assert factorized_mid_channels(256, 512, 3, 3) == 921
    assert factorized_mid_channels(512, 512, 3, 3) == 1152
    assert factorized_mid_channels(3, 64, 3, 7) == 83  # the stem would get 83; VMZ uses 45


@pytest.mark.parametrize("variant", VARIANTS)
def test_endpoint_shapes(variant):
    backbone = R2Plus1DBackbone(variant=variant, **TINY)
    clip = np.random.RandomState(0).randn(2, 8, 32, 32, 3).astype("float32")
    out = backbone({"slow": clip})
    t_stem = 1 if variant == "r2d" else 8
    t_final = FINAL_T_AT_8[variant]
    conv_types = variant_conv_types(variant)
    t = t_stem
    expected = {"slow_stem": (2, t_stem, 16, 16, 4), "slow_res2": (2, t_stem, 16, 16, 4)}
    for stage in (3, 4, 5):
        if conv_types[stage - 1] != "2d" and variant != "r2d":
            t //= 2
        side = 32 // 2 ** (stage - 1)
        expected[f"slow_res{stage}"] = (2, t, side, side, 4 * 2 ** (stage - 2))
    assert t == t_final
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert backbone.output_frames == {"slow": t_final}
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in out.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_r18_parameter_counts(variant):
    backbone = build_backbone(f"{variant}_r18")  # the preset: depth 18, 16 frames
    count = _trainable(backbone)
    assert count == _expected_params(variant, 18, 16)
    assert count + K400_HEAD == R18_PARAMS_K400[variant]
    if variant == "r2plus1d":  # Eq. 1 per conv: conv3_1's second conv is 128 -> 128
        assert backbone.get_layer("s3_pathway0_res0_branch2_a_spatial").filters == 230
        assert backbone.get_layer("s3_pathway0_res0_branch2_b_spatial").filters == 288
    if variant in TORCHVISION_GFLOPS_16x112:
        gmacs = count_flops(backbone, image_size=112, convention="paper") / 1e9
        assert round(gmacs, 2) == TORCHVISION_GFLOPS_16x112[variant]


def test_torchvision_mid_channel_rule():
    # torchvision computes one M per block from (block in, block out) and reuses it for the
    # second conv; the rules differ only there, in the first block of conv3_x .. conv5_x.
    # (The built model's 31,505,325 is checked on the classifier in r2plus1d_presets_test.py.)
    assert _expected_params("r2plus1d", 18, 16, "torchvision") + K400_HEAD == (
        TORCHVISION_R2PLUS1D_18
    )
    assert _block_mid_channels("torchvision", 64, 128) == (230, 230)
    assert _block_mid_channels("paper", 64, 128) == (230, 288)
    assert _block_mid_channels("torchvision", 128, 128) == _block_mid_channels("paper", 128, 128)


def test_r2plus1d_matches_r3d_parameters():
    # The paper's design point: (2+1)D keeps the 3D parameter budget (Eq. 1 floors M_i, the
    # inner BN adds 2 M_i), so the two agree to within 0.1%.
    r3d, r21d = R18_PARAMS_K400["r3d"], R18_PARAMS_K400["r2plus1d"]
    assert abs(r21d - r3d) / r3d < 1e-3
    # R34: build the (2+1)D model, compare with the Table 1 count of R3D-34.
    r21d_34 = _trainable(R2Plus1DBackbone(variant="r2plus1d", depth=34))
    assert r21d_34 == _expected_params("r2plus1d", 34, 16)
    r3d_34 = _expected_params("r3d", 34, 16)
    assert r3d_34 + K400_HEAD == 63_681_104
    assert abs(r21d_34 - r3d_34) / r3d_34 < 1e-3


def test_frame_wise_variant_does_not_mix_time():
    # f-R2D applies 2D convs per frame, so reversing the frames reverses every endpoint in time.
    backbone = R2Plus1DBackbone(variant="fr2d", **TINY)
    clip = np.random.RandomState(1).randn(1, 8, 32, 32, 3).astype("float32")
    forward = backbone({"slow": clip})["slow_res5"]
    backward = backbone({"slow": clip[:, ::-1]})["slow_res5"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(forward)[:, ::-1], keras.ops.convert_to_numpy(backward),
        rtol=1e-5, atol=1e-5,
    )
    # ... while R3D does mix neighbouring frames.
    r3d = R2Plus1DBackbone(variant="mc3", **TINY)
    forward = keras.ops.convert_to_numpy(r3d({"slow": clip})["slow_res2"])
    backward = keras.ops.convert_to_numpy(r3d({"slow": clip[:, ::-1]})["slow_res2"])
    assert np.abs(forward[:, ::-1] - backward).max() > 1e-3


def test_layer_names_and_kernels():
    backbone = R2Plus1DBackbone(variant="r2plus1d", **TINY)
    assert backbone.get_layer("s1_pathway0_stem_conv_spatial").kernel.shape == (1, 7, 7, 3, 45)
    assert backbone.get_layer("s1_pathway0_stem_conv_temporal").kernel.shape == (3, 1, 1, 45, 4)
    assert backbone.get_layer("s3_pathway0_res0_branch1").strides == (2, 2, 2)
    r2d = R2Plus1DBackbone(variant="r2d", **TINY)
    assert r2d.get_layer("s1_pathway0_stem_conv").kernel.shape == (8, 7, 7, 3, 4)
    mc4 = R2Plus1DBackbone(variant="mc4", **TINY)
    assert mc4.get_layer("s3_pathway0_res0_branch2_a").kernel.shape[0] == 3
    assert mc4.get_layer("s4_pathway0_res0_branch2_a").kernel.shape[0] == 1
    assert mc4.get_layer("s4_pathway0_res0_branch1").strides == (1, 2, 2)
    # Project convention: the last BN of each residual branch starts at zero.
    gamma = backbone.get_layer("s2_pathway0_res0_branch2_b_bn").gamma
    assert float(keras.ops.max(keras.ops.abs(gamma))) == 0.0


def test_backbone_harness():
    # Shapes, config/JSON round trip, .keras reload, predict(tf.data), mixed_float16 dtypes and
    # a gradient to every variable (the (2+1)D inner BNs included). The classifier harness in
    # r2plus1d_presets_test.py covers the 3D and 2D blocks (MC4).
    clip = np.random.RandomState(2).randn(2, 8, 32, 32, 3).astype("float32")
    expected = {
        "slow_stem": (2, 8, 16, 16, 4),
        "slow_res2": (2, 8, 16, 16, 4),
        "slow_res3": (2, 4, 8, 8, 8),
        "slow_res4": (2, 2, 4, 4, 16),
        "slow_res5": (2, 1, 2, 2, 32),
    }
    backbone = run_video_backbone_test(
        R2Plus1DBackbone, dict(TINY, variant="r2plus1d", image_size=32), {"slow": clip}, expected
    )
    assert backbone.pathways == ("slow",)
    assert backbone.output_channels == {"slow": 32}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "r4d"}, "variant"),
        ({"variant": "mc6"}, "variant"),
        ({"depth": 50}, "depth"),
        ({"num_frames": 12}, "multiple of 8"),
        ({"variant": "mc5", "num_frames": 6}, "multiple of 4"),
        ({"num_frames": 0}, "num_frames"),
        ({"mid_channels": "vmz"}, "mid_channels"),
        ({"norm": "group_norm"}, "norm"),
        ({"base_filters": 0}, "base_filters"),
        ({"image_size": -1}, "image_size"),
    ],
)
def test_bad_config_raises(kwargs, match):
    config = dict(TINY, **kwargs)
    with pytest.raises(ValueError, match=match):
        R2Plus1DBackbone(**config)


def test_bad_inputs_raise():
    backbone = R2Plus1DBackbone(variant="r3d", **TINY)
    clip = np.zeros((1, 8, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match="dict"):
        backbone(clip)
    with pytest.raises(ValueError, match="dict"):
        backbone({"fast": clip})
    # Keras' input spec (or our own check) rejects a clip of the wrong length.
    with pytest.raises(ValueError, match="16, 32, 32, 3"):
        backbone({"slow": np.zeros((1, 16, 32, 32, 3), "float32")})
