"""``ConcatZeroPadding3D`` equals ``ZeroPadding3D`` and keeps ``Pad`` ops away from ``Conv3D``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.models.common import torch_layers


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", [((3, 3), (0, 0), (0, 0)), ((1, 2), (0, 3), (2, 0)), 2])
def test_concat_padding_equals_zero_padding(padding, data_format):
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3, 6)).astype("float32")
    want = keras.layers.ZeroPadding3D(padding, data_format=data_format)(x)
    layer = torch_layers.ConcatZeroPadding3D(padding, data_format=data_format)
    got = layer(x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert layer.compute_output_shape(x.shape) == tuple(want.shape)
    # Unknown dimensions at trace time, as in train.py's models.
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None] * 5)])
    np.testing.assert_array_equal(fn(x).numpy(), np.asarray(want))
    restored = torch_layers.ConcatZeroPadding3D.from_config(layer.get_config())
    assert restored.padding == layer.padding


def test_plain_conv3d_is_never_fed_by_a_pad_op():
    # The fusion conv ([7, 1, 1], temporal stride 4, torch padding 3) with unknown sizes: the
    # training graph must hold no Pad -> Conv3D pair (Grappler's oneDNN remapper breaks on it).
    inputs = keras.Input((None, None, None, 4))
    outputs = torch_layers.conv3d(inputs, 8, (7, 1, 1), strides=(4, 1, 1), name="fuse")
    model = keras.Model(inputs, outputs)
    assert isinstance(model.get_layer("fuse_pad"), torch_layers.ConcatZeroPadding3D)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 4])])
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function().graph
    conv_inputs = [
        i.op.type for op in graph.get_operations() if op.type == "Conv3D" for i in op.inputs
    ]
    assert conv_inputs and not {"Pad", "PadV2"} & set(conv_inputs), conv_inputs
    x = np.random.default_rng(1).normal(size=(2, 16, 3, 3, 4)).astype("float32")
    want = keras.layers.Conv3D(8, (7, 1, 1), strides=(4, 1, 1), use_bias=False)
    want.build(x.shape)
    want.set_weights(model.get_layer("fuse").get_weights())
    expected = want(np.pad(x, [(0, 0), (3, 3), (0, 0), (0, 0), (0, 0)]))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), atol=1e-5)


def test_pad_class_follows_whether_the_conv_runs_as_conv2d():
    inputs = keras.Input((8, 9, 9, 4))
    outputs = [
        # [1, 3, 3] with spatial stride only: a time-folded Conv2D, a plain Pad is harmless there.
        torch_layers.conv3d(inputs, 4, (1, 3, 3), strides=(1, 2, 2), name="folded"),
        # Temporal stride: TimeFoldedConv3D falls back to a Conv3D op, which must not follow a Pad.
        torch_layers.conv3d(inputs, 4, (1, 3, 3), strides=(2, 2, 2), name="fallback"),
        # [kt, 1, 1]: a plain Conv3D.
        torch_layers.conv3d(inputs, 4, (5, 1, 1), strides=(2, 1, 1), name="plain"),
    ]
    model = keras.Model(inputs, outputs)
    kinds = {n: type(model.get_layer(f"{n}_pad")) for n in ("folded", "fallback", "plain")}
    assert kinds == {
        "folded": keras.layers.ZeroPadding3D,
        "fallback": torch_layers.ConcatZeroPadding3D,
        "plain": torch_layers.ConcatZeroPadding3D,
    }
