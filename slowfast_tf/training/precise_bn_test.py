import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.training import precise_bn


def test_precise_bn_is_average_of_batch_statistics():
    inputs = keras.Input((2,))
    x = keras.layers.BatchNormalization(name="bn")(inputs)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    bn = model.get_layer("bn")
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, scale=1 + i, size=(8, 2)).astype("float32") for i in range(4)]
    ds = tf.data.Dataset.from_tensor_slices(
        (np.concatenate(batches), np.zeros(32, "float32"))
    ).batch(8)
    used = precise_bn.update_bn_stats(model, ds, num_batches=3)
    assert used == 3
    want_mean = np.mean([b.mean(0) for b in batches[:3]], axis=0)
    want_var = np.mean([b.var(0) for b in batches[:3]], axis=0)  # Biased, as Keras BN.
    np.testing.assert_allclose(bn.moving_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), want_var, rtol=1e-5)
    assert bn.momentum == pytest.approx(0.99)  # Restored.
    with pytest.raises(ValueError, match="num_batches=0"):
        precise_bn.update_bn_stats(model, ds, num_batches=0)
