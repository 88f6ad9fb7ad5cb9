"""Precise BatchNorm statistics (Wu & Johnson 2021; fvcore ``update_bn_stats``), as PySlowFast uses.

During training the BN moving averages lag behind the weights (momentum 0.9 in Keras terms). Before
an evaluation or checkpoint PySlowFast (``BN.USE_PRECISE_STATS``, 200 batches) recomputes them as
the plain average of the per-batch statistics over ``num_batches`` training batches, with the
weights frozen. We do the same: set every BN's momentum to 0 (so ``moving = batch statistic``
after each forward pass), run the batches in training mode, average what the moving variables hold
after each batch, then write the averages back and restore the momenta.

Notes: the variance is Keras's biased batch variance (what Keras BN itself tracks); dropout is
active during these passes but sits after the last BN, so it cannot change the statistics.
Under a distribution strategy the passes run in the cross-replica context on one device.
"""

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from slowfast_tf import compat


def _bn_layers(model):
    return [
        layer
        for layer in compat.flatten_layers(model, include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def update_bn_stats(model: keras.Model, dataset: tf.data.Dataset, num_batches: int = 200) -> int:
    """Replaces BN moving mean/variance by their average over ``num_batches`` batches.

    Args:
        model: a built Keras model.
        dataset: yields ``(inputs, labels)`` or ``inputs`` batches (the training pipeline).
        num_batches: int > 0, number of batches to average over.

    Returns:
        int, the number of batches actually used (fewer if the dataset ran out).
    """
    if num_batches <= 0:
        raise ValueError(f"`num_batches` must be > 0. Received: num_batches={num_batches}")
    layers = _bn_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [
        [np.zeros(layer.moving_mean.shape, np.float64) for _ in range(2)] for layer in layers
    ]
    for layer in layers:
        # Keras updates moving = moving * momentum + batch * (1 - momentum); 0 keeps the batch stat.
        layer.momentum = 0.0

    # Traced after the momentum change: BN reads `self.momentum` as a Python constant.
    @tf.function
    def forward(inputs):
        model(inputs, training=True)

    used = 0
    try:
        for element in tqdm(dataset.take(num_batches), total=num_batches, desc="precise BN",
                            leave=False):
            inputs = element[0] if isinstance(element, tuple | list) else element
            forward(inputs)
            for layer, (mean_sum, var_sum) in zip(layers, sums):
                mean_sum += keras.ops.convert_to_numpy(layer.moving_mean)
                var_sum += keras.ops.convert_to_numpy(layer.moving_variance)
            used += 1
        if used:
            for layer, (mean_sum, var_sum) in zip(layers, sums):
                layer.moving_mean.assign((mean_sum / used).astype(np.float32))
                layer.moving_variance.assign((var_sum / used).astype(np.float32))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used
