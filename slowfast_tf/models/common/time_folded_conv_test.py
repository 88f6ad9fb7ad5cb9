"""``TimeFoldedConv3D`` and ``TemporalConv3D`` equal the plain ``Conv3D`` in outputs and in every
gradient."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.models import build_model
from slowfast_tf.models.common.time_folded_conv import TemporalConv3D, TimeFoldedConv3D

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# (input [B, T, H, W, C], Conv3D kwargs). The first is the fast stem (after its explicit pad).
CASES = [
    ((2, 12, 22, 22, 3), dict(filters=4, kernel_size=(5, 7, 7), strides=(1, 2, 2))),
    ((2, 4, 22, 22, 3), dict(filters=6, kernel_size=(1, 7, 7), strides=(1, 2, 2))),
    ((2, 4, 9, 9, 8), dict(filters=6, kernel_size=1, strides=(1, 2, 2))),
    ((2, 4, 8, 10, 4), dict(filters=6, kernel_size=1, strides=(1, 2, 3), padding="same")),
    ((2, 3, 10, 7, 8), dict(filters=5, kernel_size=1, strides=(1, 2, 2), use_bias=True)),
    ((2, 3, 9, 9, 4), dict(filters=5, kernel_size=(1, 3, 3), padding="same", use_bias=True)),
    ((1, 6, 9, 9, 5), dict(filters=3, kernel_size=(3, 3, 3), padding="same", use_bias=True)),
    ((1, 6, 9, 9, 2), dict(filters=3, kernel_size=(4, 3, 3), padding="same")),
    ((1, 6, 9, 9, 2), dict(filters=3, kernel_size=(3, 1, 1), dilation_rate=(1, 2, 2))),
    # Not foldable (temporal stride): falls back to Conv3D.
    ((1, 8, 9, 9, 2), dict(filters=3, kernel_size=(3, 3, 3), strides=(2, 1, 1))),
]


def _assert_equals_conv3d(layer_class, shape, kwargs, **call_kwargs):
    """Builds ``Conv3D`` and ``layer_class`` with the same weights; asserts equal outputs, input
    gradients and weight gradients (to 1e-5 of their scale) and the same weight names. Returns
    the ``layer_class`` layer."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    plain = keras.layers.Conv3D(**kwargs)
    other = layer_class(**kwargs)
    plain.build(shape)
    other.build(shape)
    weights = [rng.normal(size=v.shape).astype("float32") for v in plain.weights]
    plain.set_weights(weights)
    other.set_weights(weights)
    upstream = None
    results = []
    for layer, kw in ((plain, {}), (other, call_kwargs)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **kw)
            if upstream is None:
                upstream = tf.constant(rng.normal(size=y.shape).astype("float32"))
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append([y, *grads])
    assert [v.path.split("/")[-1] for v in other.weights] == [
        v.path.split("/")[-1] for v in plain.weights
    ]
    for a, b in zip(*results):
        assert a.shape == b.shape
        scale = max(1.0, float(tf.reduce_max(tf.abs(a))))
        np.testing.assert_allclose(b.numpy() / scale, a.numpy() / scale, atol=1e-5, rtol=0)
    return other


@pytest.mark.parametrize("shape,kwargs", CASES)
def test_outputs_and_gradients_equal_conv3d(shape, kwargs):
    _assert_equals_conv3d(TimeFoldedConv3D, shape, kwargs)


@pytest.mark.parametrize("strides", [(1, 2, 2), (1, 3, 2)])
def test_strided_1x1_with_unknown_spatial_sizes_equals_conv3d(strides):
    # Inside a tf.function traced for [B, T, None, None, C] the subsample pads H and W by amounts
    # computed at run time; odd and even sizes must both give Conv3D's output.
    kwargs = dict(filters=4, kernel_size=1, strides=strides, use_bias=True)
    plain, folded = keras.layers.Conv3D(**kwargs), TimeFoldedConv3D(**kwargs)
    plain.build((None, 2, None, None, 3))
    folded.build((None, 2, None, None, 3))
    folded.set_weights([np.arange(12, dtype="float32").reshape(1, 1, 1, 3, 4) / 7, np.ones(4)])
    plain.set_weights(folded.get_weights())
    run = tf.function(folded, input_signature=[tf.TensorSpec([None, 2, None, None, 3])])
    rng = np.random.default_rng(1)
    for h, w in [(8, 8), (9, 7), (5, 12)]:
        x = rng.normal(size=(2, 2, h, w, 3)).astype("float32")
        got = run(tf.constant(x)).numpy()
        assert got.shape == (2, 2, -(-h // strides[1]), -(-w // strides[2]), 4)
        np.testing.assert_allclose(got, plain(x).numpy(), atol=1e-5, rtol=0)


def test_stems_and_1xkxk_convs_use_it_and_keep_names_and_shapes():
    model = build_model("slowfast_r50_8x8", depth=18, width=8, beta_inv=4, num_frames=8,
                        image_size=32)
    stems = {
        layer.name: layer for layer in model.backbone.layers
        if isinstance(layer, TimeFoldedConv3D)
    }
    assert {
        "s1_pathway0_stem_conv", "s1_pathway1_stem_conv", "s2_pathway0_res0_branch2_b",
        "s2_pathway0_res0_branch2_c", "s2_pathway0_res0_branch2_a",  # [1, 1, 1]
    } <= set(stems)
    assert "s2_pathway1_res0_branch2_a" not in stems  # [3, 1, 1]: plain Conv3D
    assert "s2_fuse_conv_f2s" not in stems  # temporal stride: plain Conv3D
    assert tuple(stems["s1_pathway1_stem_conv"].kernel.shape) == (5, 7, 7, 3, 2)
    assert tuple(stems["s1_pathway0_stem_conv"].kernel.shape) == (1, 7, 7, 3, 8)
    config = stems["s1_pathway1_stem_conv"].get_config()
    assert TimeFoldedConv3D.from_config(config).get_config() == config


def test_strided_1x1_gradient_does_not_crash_onednn():
    # TF 2.21's oneDNN Conv2DBackpropFilter for this strided 1x1 shape corrupted the heap and
    # aborted the process on AVX-512 CPUs (the fast pathway's shortcut in a width-8 model). The
    # layer subsamples and runs a stride-1 conv instead; run in a subprocess so a crash is a
    # failure, not the end of the test session.
    code = (
        "import numpy as np, tensorflow as tf\n"
        "from slowfast_tf.models.common.time_folded_conv import TimeFoldedConv3D\n"
        "layer = TimeFoldedConv3D(8, 1, strides=(1, 2, 2))\n"
        "x = tf.constant(np.random.default_rng(0).normal(size=(2, 32, 56, 56, 4)), tf.float32)\n"
        "for _ in range(3):\n"
        "    with tf.GradientTape() as tape:\n"
        "        loss = tf.reduce_sum(layer(x) ** 2)\n"
        "    grad = tape.gradient(loss, layer.kernel)\n"
        "print('grad', grad.shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "grad (1, 1, 1, 4, 8)" in out.stdout


# (input [B, T, H, W, C], Conv3D kwargs, the route TemporalConv3D takes in training).
TEMPORAL_CASES = [
    ((2, 6, 3, 5, 8), dict(filters=4, kernel_size=(3, 1, 1), padding="same"), "conv2d"),
    ((2, 5, 4, 3, 64), dict(filters=6, kernel_size=(3, 1, 1), padding="same", use_bias=True),
     "conv2d"),
    ((1, 6, 2, 3, 16), dict(filters=4, kernel_size=(2, 1, 1), padding="same"), "conv2d"),
    ((1, 6, 2, 3, 16), dict(filters=4, kernel_size=(4, 1, 1), padding="valid"), "conv2d"),
    ((2, 4, 2, 3, 1280), dict(filters=5, kernel_size=(3, 1, 1), padding="same"), "matmul"),
    ((1, 6, 2, 2, 1280), dict(filters=3, kernel_size=(2, 1, 1), padding="same", use_bias=True),
     "matmul"),
    ((1, 6, 2, 2, 1280), dict(filters=3, kernel_size=(4, 1, 1), padding="valid"), "matmul"),
    ((2, 4, 3, 3, 100), dict(filters=4, kernel_size=(3, 1, 1), padding="same"), "conv3d"),
    # Temporal dilation is not rewritten.
    ((1, 8, 2, 2, 8), dict(filters=3, kernel_size=(3, 1, 1), dilation_rate=(2, 1, 1)), "conv3d"),
]


def _conv_op_types(layer, shape, training):
    fn = tf.function(lambda x: layer(x, training=training))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return {op.type for op in graph.get_operations()} & {"Conv2D", "Conv3D", "MatMul",
                                                          "BatchMatMulV2"}


@pytest.mark.parametrize("shape,kwargs,route", TEMPORAL_CASES)
def test_temporal_conv_outputs_and_gradients_equal_conv3d(shape, kwargs, route):
    temporal = _assert_equals_conv3d(TemporalConv3D, shape, kwargs, training=True)
    assert temporal._route(shape[-1]) == route
    # The rewrite is real: in training the graph runs the route's op, in inference the Conv3D op.
    expected = {"conv2d": {"Conv2D"}, "matmul": {"MatMul"}, "conv3d": {"Conv3D"}}[route]
    assert _conv_op_types(temporal, shape, training=True) <= expected | {"BatchMatMulV2"}
    assert _conv_op_types(temporal, shape, training=True) & (expected | {"BatchMatMulV2"})
    assert _conv_op_types(temporal, shape, training=False) == {"Conv3D"}


@pytest.mark.parametrize("channels", [8, 1280])
def test_temporal_conv_with_unknown_sizes_equals_conv3d(channels):
    # train.py traces for [B, T, None, None, C]; the reshapes must use the run-time sizes.
    kwargs = dict(filters=3, kernel_size=(3, 1, 1), padding="same", use_bias=True)
    plain, temporal = keras.layers.Conv3D(**kwargs), TemporalConv3D(**kwargs)
    plain.build((None, 4, None, None, channels))
    temporal.build((None, 4, None, None, channels))
    rng = np.random.default_rng(2)
    temporal.set_weights([rng.normal(size=v.shape).astype("float32") for v in plain.weights])
    plain.set_weights(temporal.get_weights())
    run = tf.function(
        lambda x: temporal(x, training=True),
        input_signature=[tf.TensorSpec([None, None, None, None, channels])],
    )
    for b, t, h, w in [(2, 4, 3, 5), (1, 6, 2, 2)]:
        x = rng.normal(size=(b, t, h, w, channels)).astype("float32")
        got = run(tf.constant(x)).numpy()
        assert got.shape == (b, t, h, w, 3)
        want = plain(x).numpy()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got / scale, want / scale, atol=1e-5, rtol=0)


def test_temporal_convs_in_slowfast_keep_names_and_config():
    model = build_model("slowfast_r50_8x8", depth=18, width=8, beta_inv=4, num_frames=8,
                        image_size=32)
    temporal = {
        layer.name: layer for layer in model.backbone.layers if isinstance(layer, TemporalConv3D)
    }
    # Every stride-1 [3, 1, 1] branch2_a conv (fast pathway, and slow res4/res5), nothing else.
    assert "s2_pathway1_res0_branch2_a" in temporal
    assert "s5_pathway0_res0_branch2_a" in temporal
    assert "s2_pathway0_res0_branch2_a" not in temporal  # [1, 1, 1]: TimeFoldedConv3D
    assert "s2_fuse_conv_f2s" not in temporal  # temporal stride: plain Conv3D
    assert all(layer.kernel_size == (3, 1, 1) for layer in temporal.values())
    assert [v.path.split("/")[-1] for v in temporal["s2_pathway1_res0_branch2_a"].weights] == [
        "kernel"
    ]
    config = temporal["s5_pathway0_res0_branch2_a"].get_config()
    assert TemporalConv3D.from_config(config).get_config() == config


def test_weights_saved_with_plain_conv3d_layers_still_load(tmp_path, monkeypatch):
    # Files saved before TemporalConv3D existed (those convs were keras Conv3D) must load into
    # today's model unchanged: Keras addresses layers in weight files by class name and counter.
    from slowfast_tf.models.common import torch_layers

    kwargs = dict(depth=18, width=8, beta_inv=4, num_frames=8, image_size=32)
    with monkeypatch.context() as patch:
        patch.setattr(torch_layers, "TemporalConv3D", keras.layers.Conv3D)
        keras.utils.set_random_seed(1)
        old = build_model("slowfast_r50_8x8", **kwargs)
    keras.utils.set_random_seed(2)
    new = build_model("slowfast_r50_8x8", **kwargs)
    assert any(isinstance(layer, TemporalConv3D) for layer in new.backbone.layers)
    assert not any(isinstance(layer, TemporalConv3D) for layer in old.backbone.layers)
    old.save_weights(tmp_path / "old.weights.h5")
    new.load_weights(tmp_path / "old.weights.h5")
    assert [v.path for v in new.weights] == [v.path for v in old.weights]
    for a, b in zip(old.weights, new.weights):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    # A whole-model file written today reloads as TemporalConv3D layers.
    new.save(tmp_path / "new.keras")
    loaded = keras.saving.load_model(tmp_path / "new.keras")
    assert isinstance(loaded.backbone.get_layer("s5_pathway0_res0_branch2_a"), TemporalConv3D)
    for a, b in zip(new.weights, loaded.weights):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
