"""Strict loading into Keras: round trips, error listings, head handling (tiny models, no torch)."""

import numpy as np
import pytest

from slowfast_tf.convert import (
    ConversionError,
    keras_loader,
    keras_to_pyslowfast_state,
    load_pyslowfast_state_into,
    load_torch_state_dict_into,
    name_maps,
)
from slowfast_tf.models import build_model
from slowfast_tf.testing.parity_fixtures import caffe2_blobs_from_pyslowfast

# R18-like depth, width 8, 8 fast frames at 32x32: builds in a few seconds.
TINY = dict(depth=18, width=8, image_size=32, num_frames=8)


def _tiny(preset="slowfast_r50_8x8", num_classes=5, **overrides):
    return build_model(preset, num_classes=num_classes, **{**TINY, **overrides})


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.standard_normal(variable.shape).astype("float32") * 0.1
        if "moving_variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value)


def _clip(model, seed=0):
    rng = np.random.default_rng(seed)
    return {
        k: rng.standard_normal((1, model.backbone.input_frames[k], 32, 32, 3)).astype("float32")
        for k in model.backbone.pathways
    }


@pytest.fixture(scope="module")
def source_model():
    model = _tiny()
    _randomize(model, seed=1)
    return model


@pytest.fixture(scope="module")
def source_state(source_model):
    return keras_to_pyslowfast_state(source_model)


@pytest.fixture(scope="module")
def target():
    # Shared between tests: a successful load overwrites every weight and a failed one
    # writes none, so no test depends on what an earlier one left behind.
    return _tiny()


def test_layout_transforms():
    conv = np.arange(2 * 3 * 5 * 1 * 1, dtype="float32").reshape(2, 3, 5, 1, 1)  # O I kt kh kw
    keras_conv = keras_loader.torch_to_keras_layout(conv, (5, 1, 1, 3, 2))
    assert keras_conv.shape == (5, 1, 1, 3, 2)
    assert keras_conv[4, 0, 0, 1, 0] == conv[0, 1, 4, 0, 0]
    linear = np.arange(6, dtype="float32").reshape(3, 2)  # [out, in]
    np.testing.assert_array_equal(keras_loader.torch_to_keras_layout(linear, (2, 3)), linear.T)
    as_conv = keras_loader.torch_to_keras_layout(linear, (1, 1, 1, 2, 3))
    np.testing.assert_array_equal(as_conv[0, 0, 0], linear.T)
    # A Caffe2 blob with trailing singleton dims dropped is padded back to 5-D.
    short = conv[..., 0, 0]
    np.testing.assert_array_equal(
        keras_loader.torch_to_keras_layout(short, (5, 1, 1, 3, 2)), keras_conv
    )


def test_round_trip_reproduces_outputs(source_model, source_state, target):
    assert all("." in k for k in source_state)
    assert source_state["s1_fuse.conv_f2s.weight"].shape == (2, 1, 7, 1, 1)  # O I kt kh kw
    assert source_state[name_maps.HEAD_WEIGHT].shape == (5, 256 + 32)  # [classes, 2304 / 8]
    report = load_pyslowfast_state_into(target, source_state)
    assert report.num_tensors == len(target.weights) == len(source_state)
    assert report.checkpoint_num_classes == report.model_num_classes == 5
    assert report.num_values == sum(int(np.prod(v.shape)) for v in target.weights)
    inputs = _clip(target)
    np.testing.assert_allclose(
        target(inputs, training=False), source_model(inputs, training=False), rtol=1e-6, atol=1e-6
    )


def test_missing_tensor_is_listed_and_nothing_is_loaded(source_state, target):
    kernel = next(v for v in target.weights if v.path == "s1_pathway0_stem_conv/kernel")
    original = np.array(kernel.numpy())
    state = dict(source_state)
    del state["s3.pathway1_res1.branch2.b_bn.running_var"]
    with pytest.raises(ConversionError) as info:
        load_pyslowfast_state_into(target, state)
    message = str(info.value)
    assert "Keras weights left unassigned (1)" in message
    assert "s3_pathway1_res1_branch2_b_bn/moving_variance" in message
    np.testing.assert_array_equal(kernel.numpy(), original)  # No partial load.


def test_unmapped_checkpoint_tensors_are_listed(source_state, target):
    state = dict(source_state)
    state["s6.pathway0_res0.branch2.a.weight"] = np.zeros((1, 1, 1, 1, 1), "float32")
    with pytest.raises(ConversionError, match=r"no Keras weight \(2\)") as info:
        load_pyslowfast_state_into(target, state, unmapped=["blocks.9.mystery.weight"])
    assert "s6.pathway0_res0.branch2.a.weight" in str(info.value)
    assert "blocks.9.mystery.weight" in str(info.value)


def test_4x16_checkpoint_into_8x8_model_lists_fusion_kernel_mismatches(target):
    # 4x16 (alpha 8, fusion kernel 5) weights into an 8x8 model (alpha 4, kernel 7).
    state = keras_to_pyslowfast_state(_tiny("slowfast_r50_4x16", num_frames=16))
    with pytest.raises(ConversionError) as info:
        load_pyslowfast_state_into(target, state)
    message = str(info.value)
    assert "shape mismatches" in message
    for stage in (1, 2, 3, 4):
        assert f"s{stage}_fuse.conv_f2s.weight" in message
    assert "(5, 1, 1, 1, 2) vs (7, 1, 1, 1, 2)" in message  # s1: kt 5 vs 7, 1 -> 2 channels


def test_head_mismatch_fails_by_default_and_is_dropped_for_finetuning(source_state):
    target = _tiny(num_classes=7)
    with pytest.raises(ConversionError, match="--num_classes"):
        load_pyslowfast_state_into(target, source_state)
    head_before = np.array(target.get_layer("head_projection").kernel.numpy())
    report = load_pyslowfast_state_into(target, source_state, allow_head_mismatch=True)
    assert report.head_dropped
    assert report.checkpoint_num_classes == 5 and report.model_num_classes == 7
    assert "left at its initialisation" in str(report)
    assert report.num_tensors == len(source_state) - 2
    np.testing.assert_array_equal(target.get_layer("head_projection").kernel.numpy(), head_before)
    stem = next(v for v in target.weights if v.path == "s1_pathway1_stem_conv/kernel")
    np.testing.assert_array_equal(
        stem.numpy(), np.transpose(source_state["s1.pathway1_stem.conv.weight"], (2, 3, 4, 1, 0))
    )


def test_headless_checkpoint_needs_allow_head_mismatch(source_state, target):
    state = {k: v for k, v in source_state.items() if not k.startswith("head.")}
    with pytest.raises(ConversionError, match="head_projection/kernel") as info:
        load_pyslowfast_state_into(target, state)
    assert "has no classifier head" in str(info.value)
    report = load_pyslowfast_state_into(target, state, allow_head_mismatch=True)
    assert report.head_dropped and "has no head" in str(report)


def test_backbone_only_model_skips_the_head(source_state, target):
    report = load_pyslowfast_state_into(target.backbone, source_state)
    assert report.num_tensors == len(source_state) - 2
    assert "no 'head_projection'" in str(report)


def test_nonlocal_model_round_trips_through_caffe2_blob_names():
    # No PyTorchVideo model has non-local blocks, so the NL name map is checked by a round trip
    # through the Caffe2 names (conv_theta/phi/g/out with biases, bn).
    kwargs = dict(nonlocal_locations=[[], [1], [1], []])
    source = _tiny("slowfast_nln_r50_8x8", **kwargs)
    _randomize(source, seed=2)
    state = keras_to_pyslowfast_state(source)
    assert "s4.pathway0_nonlocal1.conv_theta.bias" in state
    blobs = caffe2_blobs_from_pyslowfast(state)
    assert "nonlocal_conv4_1_theta_b" in blobs and "nonlocal_conv3_1_bn_riv" in blobs
    assert "t_res3_1_branch2c_bn_subsample_w" in blobs  # R18 res3 has 2 fast blocks
    target = _tiny("slowfast_nln_r50_8x8", **kwargs)
    report = load_torch_state_dict_into(target, blobs, source="caffe2")
    assert "lr" in report.ignored and "conv1_w_momentum" in report.ignored
    inputs = _clip(target)
    np.testing.assert_allclose(
        target(inputs, training=False), source(inputs, training=False), rtol=1e-6, atol=1e-6
    )


def test_unknown_caffe2_blob_is_reported(source_state, target):
    blobs = caffe2_blobs_from_pyslowfast(source_state)
    blobs["res2_0_branch2a_conv_extra_w"] = np.zeros((1,), "float32")
    with pytest.raises(ConversionError, match="res2_0_branch2a_conv_extra_w"):
        load_torch_state_dict_into(target, blobs, source="caffe2")


def test_bad_source_is_rejected(source_state, target):
    with pytest.raises(ValueError, match="Received: source='tf'"):
        load_torch_state_dict_into(target, source_state, source="tf")


def test_check_finite_names_nan_and_inf_tensors():
    from slowfast_tf.convert import ConversionError
    from slowfast_tf.convert.keras_loader import check_finite

    ok = {"a": np.ones(3, np.float32), "steps": np.asarray([5], np.int64)}
    assert check_finite(ok) is None
    bad = dict(ok, b=np.asarray([1.0, np.nan, np.inf], np.float16))
    with pytest.raises(ConversionError, match=r"1 tensor\(s\) hold NaN/Inf values: b \(2 of 3\)"):
        check_finite(bad)
    assert check_finite(bad, allow_non_finite=True).startswith("WARNING")
