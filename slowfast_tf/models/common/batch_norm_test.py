"""The fused-training ``BatchNormalization`` equals Keras's in outputs, gradients and statistics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf import kernels
from slowfast_tf.models import build_model
from slowfast_tf.models.common.batch_norm import BatchNormalization

SHAPES = [(2, 4, 6, 5, 3), (2, 8, 7, 7, 16), (3, 5, 4, 8), (4, 1, 1, 1, 4)]


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    kwargs = dict(axis=-1, momentum=0.9, epsilon=1e-5)
    layers = [keras.layers.BatchNormalization(**kwargs), BatchNormalization(**kwargs)]
    for layer in layers:
        layer.build(shape)
    weights = [
        rng.normal(1.0, 0.5, shape[-1]),  # gamma
        rng.normal(0.0, 0.5, shape[-1]),  # beta
        rng.normal(0.0, 1.0, shape[-1]),  # moving mean
        rng.uniform(0.5, 2.0, shape[-1]),  # moving variance
    ]
    for layer in layers:
        layer.set_weights([w.astype("float32") for w in weights])
    return layers, rng


@pytest.mark.parametrize("shape", SHAPES)
def test_training_outputs_gradients_and_moving_stats_equal_keras(shape):
    layers, rng = _pair(shape)
    # Off-centre, scaled input: the batch mean and variance matter.
    x = tf.constant((rng.normal(size=shape) * 3.0 + 2.0).astype("float32"))
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append([y, *grads, layer.moving_mean.value, layer.moving_variance.value])
    for a, b in zip(*results):
        scale = max(1.0, float(tf.reduce_max(tf.abs(a))))
        np.testing.assert_allclose(b.numpy() / scale, a.numpy() / scale, atol=1e-5, rtol=0)


def test_fused_kernel_is_used_on_tensorflow_only_in_training():
    layer = BatchNormalization()
    x = tf.zeros((2, 3, 4, 4, 8))
    layer.build(x.shape)
    assert layer._fused_kernel(x, True, None) is kernels.get("batch_norm_train") is not None
    assert layer._fused_kernel(x, False, None) is None
    assert layer._fused_kernel(tf.zeros((2, 8)), True, None) is None  # rank 2: Keras's code
    layer.trainable = False
    assert layer._fused_kernel(x, True, None) is None


def test_inference_and_frozen_layers_equal_keras():
    shape = (2, 3, 4, 4, 5)
    layers, rng = _pair(shape, seed=1)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    np.testing.assert_allclose(
        layers[1](x, training=False), layers[0](x, training=False), atol=1e-6
    )
    for layer in layers:
        layer.trainable = False
    np.testing.assert_allclose(layers[1](x, training=True), layers[0](x, training=True), atol=1e-6)
    np.testing.assert_array_equal(layers[1].moving_mean.numpy(), layers[0].moving_mean.numpy())


def test_models_use_it_and_serialize():
    model = build_model(
        "slowfast_r50_8x8", depth=18, width=8, beta_inv=4, num_frames=8, image_size=32
    )
    bns = [
        layer
        for layer in model.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert bns and all(isinstance(layer, BatchNormalization) for layer in bns)
    config = bns[0].get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(bns[0]))
    assert type(restored) is BatchNormalization and restored.get_config() == config
