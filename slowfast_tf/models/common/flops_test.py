"""FLOP / parameter counts against fvcore on PySlowFast (REFERENCE_SPEC 2.3) and the paper."""

import functools

import keras
import numpy as np
import pytest

from slowfast_tf.models import build_model
from slowfast_tf.models.common.flops import count_flops, count_params, layer_flops


@functools.cache
def _model(name, **overrides):
    return build_model(name, **overrides)


# (params, fvcore GF @224, fvcore GF @256) measured with fvcore on PySlowFast HEAD.
FVCORE = {
    "slowfast_r50_4x16": (34_480_216, 27.82, 36.34),
    "slowfast_r50_8x8": (34_566_488, 50.58, 66.07),
    "slowfast_nln_r50_4x16": (41_838_680, 35.96, 48.16),
    "slowfast_nln_r50_8x8": (41_838_680, 72.52, 99.51),
    "slow_r50_4x16": (32_454_096, 20.96, 27.38),
    "slow_r50_8x8": (32_454_096, 41.92, 54.75),
    "c2d_r50_8x8": (24_327_632, 19.62, 25.63),
    "i3d_r50_8x8": (28_043_472, 28.54, 37.28),
    "i3d_nln_r50_8x8": (35_401_936, 36.68, 49.10),
}
FVCORE_R101 = {
    "slowfast_r101_8x8": (62_826_968, 96.79, 126.43),
    "slowfast_r101_50_101_8x8": (53_914_072, 82.82, 108.17),
    "slowfast_r101_50_50_8x8": (53_774_808, 81.94, 107.03),
    "slowfast_r101_50_50_16x8": (53_774_808, 163.89, 214.06),
    "slowfast_nln_r101_50_50_16x8": (60_080_088, 183.79, 243.07),
    "i3d_r101_8x8": (51_754_192, 47.13, 61.56),
}


def _check_fvcore(name, params, gf224, gf256):
    model = _model(name)
    assert count_params(model) == params
    assert round(count_flops(model, image_size=224) / 1e9, 2) == gf224
    assert round(count_flops(model, image_size=256) / 1e9, 2) == gf256


@pytest.mark.parametrize("name", sorted(FVCORE))
def test_params_and_fvcore_flops_r50(name):
    _check_fvcore(name, *FVCORE[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FVCORE_R101))
def test_params_and_fvcore_flops_r101(name):
    _check_fvcore(name, *FVCORE_R101[name])


def test_paper_table2_r50():
    # Paper Table 2 (GFLOPs x views, 256 crop) excludes BatchNorm: 65.7 and 36.1.
    assert round(count_flops(_model("slowfast_r50_8x8"), image_size=256, convention="paper") / 1e9, 1) == 65.7
    assert round(count_flops(_model("slowfast_r50_4x16"), image_size=256, convention="paper") / 1e9, 1) == 36.1
    # At 224 the same model is 50.6 GF with fvcore (50.3 without BN): SlowFast issue #111's
    # "27.6 vs 36.1" for 4x16 was a 224 count.
    assert round(count_flops(_model("slowfast_r50_8x8"), image_size=224) / 1e9, 1) == 50.6
    assert round(count_flops(_model("slowfast_r50_8x8"), image_size=224, convention="paper") / 1e9, 1) == 50.3
    assert round(count_flops(_model("slowfast_r50_4x16"), image_size=224, convention="paper") / 1e9, 1) == 27.6


@pytest.mark.slow
def test_paper_table2_r101():
    r101 = count_flops(_model("slowfast_r101_50_50_8x8"), image_size=256, convention="paper") / 1e9
    # 106.51 GF; the paper prints 106 (it truncates here; the R101 "50_50" variant is the only
    # R101 8x8 within 1 GF of it: the 101_101_101 one is 126 GF).
    assert int(r101) == 106
    r101_16 = count_flops(_model("slowfast_r101_50_50_16x8"), image_size=256, convention="paper")
    assert round(r101_16 / 1e9) == 213
    # The paper's 16x8 R101 + NL row (234 GF) is reproduced only with a non-local pool of
    # [2, 2, 2] (as in PySlowFast's AVA R101 configs); the Kinetics config's [1, 2, 2] pool
    # gives 242.0 GF (fvcore 243.07). Parameters are identical, so weights are interchangeable.
    nl = _model("slowfast_nln_r101_50_50_16x8", nonlocal_pool=(2, 2, 2))
    assert round(count_flops(nl, image_size=256, convention="paper") / 1e9) == 234


def test_tiny_model_counts_by_hand():
    inputs = keras.Input((4, 8, 8, 3))
    x = keras.layers.Conv3D(5, (3, 3, 3), padding="same", use_bias=True)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(7)(x)
    model = keras.Model(inputs, outputs)
    conv = 4 * 8 * 8 * 5 * (3 * 3 * 3 * 3)
    bn = 2 * 4 * 8 * 8 * 5
    dense = 4 * 8 * 8 * 5 * 7
    assert count_flops(model, batch_size=2) == 2 * (conv + bn + dense)
    assert count_flops(model, convention="paper") == conv + dense
    # Parameters as torch counts them: conv w+b, BN gamma+beta (no moving stats), dense w+b.
    assert count_params(model) == 3 * 27 * 5 + 5 + 2 * 5 + 5 * 7 + 7
    names = [name for name, _, flops in layer_flops(model) if flops]
    assert len(names) == 3


def test_head_counted_per_position():
    model = _model("slowfast_r50_8x8")
    dense = {n: f for n, _, f in layer_flops(model, image_size=256)}["head_projection"]
    assert dense == 4 * 2304 * 400  # 2x2 grid at 256 with the 7x7 train-crop pool kernel


def test_bad_arguments():
    model = _model("slowfast_r50_8x8")
    with pytest.raises(ValueError, match="convention='torch'"):
        count_flops(model, image_size=224, convention="torch")
    with pytest.raises(ValueError, match="unknown dims"):
        count_flops(model)
    with pytest.raises(ValueError, match="keys"):
        count_flops(model, input_shapes={"slow": (1, 8, 224, 224, 3)})
    assert np.isfinite(count_flops(model, image_size=224))
