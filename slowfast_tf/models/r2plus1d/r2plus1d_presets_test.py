"""Tests for the R(2+1)D presets and the video classifier built from them."""

import keras
import numpy as np
import pytest

from slowfast_tf.models.common.flops import count_flops
from slowfast_tf.models.r2plus1d import (
    VARIANTS,
    R2Plus1DBackbone,
    build_backbone,
    build_model,
    get_preset,
    list_presets,
)
from slowfast_tf.models.slowfast import SlowFastVideoClassifier
from slowfast_tf.testing.model_harness import run_video_classifier_test

TINY = {"depth": 10, "base_filters": 4, "num_frames": 8, "image_size": 32}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _clip(batch=2, seed=0):
    return {"slow": np.random.RandomState(seed).randn(batch, 8, 32, 32, 3).astype("float32")}


def test_preset_names():
    expected = {f"{v}_r{d}" for v in VARIANTS for d in (18, 34)} | {"r2plus1d_r18_torchvision"}
    assert set(list_presets()) == expected
    preset = get_preset("mc3_r34")
    assert preset.backbone == {"variant": "mc3", "depth": 34, "num_frames": 16}
    assert preset.frames == {"slow": 16}
    assert (preset.train_crop_size, preset.test_crop_size, preset.sampling_rate) == (112, 112, 1)
    with pytest.raises(ValueError, match="Unknown preset"):
        get_preset("r2plus1d_r50")


def test_full_size_classifier_matches_torchvision_parameter_count():
    # torchvision documents r2plus1d_18 at 31,505,325 parameters (400-way fc included).
    model = build_model("r2plus1d_r18_torchvision", num_classes=400)
    assert _trainable(model) == 31_505_325
    # At the 112 train crop the head pool is T_out x 7 x 7 (2 x 7 x 7 for 16 frames), i.e.
    # global, as VMZ's final AveragePool; VMZ trains without dropout.
    assert model.head_pool_size == {"slow": (2, 7, 7)}
    assert model.dropout == 0.0
    assert model.backbone.get_layer("s5_pathway0_res0_branch2_b_spatial").filters == 921
    # torchvision documents 40.52 GFLOPS (multiply-adds, no BN) at 16x112x112.
    gmacs = count_flops(model, image_size=112, convention="paper") / 1e9
    assert round(gmacs, 2) == 40.52


def test_classifier_outputs_and_eval_model():
    model = build_model("r2plus1d_r18", num_classes=5, **TINY)
    inputs = _clip()
    logits = keras.ops.convert_to_numpy(model(inputs))
    assert logits.shape == (2, 5)
    outputs = model.build_eval_model()(inputs)
    probs = keras.ops.convert_to_numpy(outputs["probabilities"])
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # One head position at the train crop: probabilities = softmax(logits).
    np.testing.assert_allclose(
        probs, keras.ops.convert_to_numpy(keras.ops.softmax(logits)), rtol=1e-5, atol=1e-6
    )
    assert outputs["features"].shape == (2, 32)


def test_classifier_harness():
    # Shapes, eval model, config/JSON round trip, .keras reload, predict(tf.data), float32 logits
    # under mixed_float16 and a gradient to every variable.
    backbone = build_backbone("mc4_r18", **TINY)
    model = run_video_classifier_test(
        SlowFastVideoClassifier,
        {"backbone": backbone, "num_classes": 3, "dropout": 0.0, "train_crop_size": 32},
        _clip(),
        (2, 3),
    )
    assert isinstance(model.backbone, R2Plus1DBackbone)


def test_overrides_reach_backbone_and_head():
    backbone = build_backbone("mc5_r34", num_frames=8, base_filters=4)
    assert (backbone.variant, backbone.depth, backbone.num_frames) == ("mc5", 34, 8)
    model = build_model("fr2d_r18", num_classes=7, dropout=0.5, activation="sigmoid", **TINY)
    assert (model.dropout, model.activation, model.num_classes) == (0.5, "sigmoid", 7)
    assert model.head_pool_size == {"slow": (8, 2, 2)}  # f-R2D pools all 8 frames at the end
    with pytest.raises(ValueError, match="multiple of 8"):
        build_model("r3d_r18", num_frames=12)
