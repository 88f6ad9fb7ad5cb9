"""``TimeFoldedConv3D`` equals the plain ``Conv3D`` in outputs and in every gradient."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.models import build_model
from slowfast_tf.models.common.time_folded_conv import TimeFoldedConv3D

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


@pytest.mark.parametrize("shape,kwargs", CASES)
def test_outputs_and_gradients_equal_conv3d(shape, kwargs):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    plain = keras.layers.Conv3D(**kwargs)
    folded = TimeFoldedConv3D(**kwargs)
    plain.build(shape)
    folded.build(shape)
    weights = [rng.normal(size=v.shape).astype("float32") for v in plain.weights]
    plain.set_weights(weights)
    folded.set_weights(weights)
    upstream = None
    results = []
    for layer in (plain, folded):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            if upstream is None:
                upstream = tf.constant(rng.normal(size=y.shape).astype("float32"))
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append([y, *grads])
    assert [v.path.split("/")[-1] for v in folded.weights] == [
        v.path.split("/")[-1] for v in plain.weights
    ]
    for a, b in zip(*results):
        assert a.shape == b.shape
        scale = max(1.0, float(tf.reduce_max(tf.abs(a))))
        np.testing.assert_allclose(b.numpy() / scale, a.numpy() / scale, atol=1e-5, rtol=0)


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
