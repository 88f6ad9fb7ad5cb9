"""Tiny models and fixtures shared by the serving tests (not part of the public API)."""

from __future__ import annotations

import keras
import numpy as np


def stand_in_classifier(
    num_classes: int = 5, num_frames: int = 8, alpha: int = 4, width: int = 8, seed: int = 0
) -> keras.Model:
    """A two-pathway model with the classifier's eval contract ({logits, probabilities, features}).

    Used only when the real model zoo is not importable; weights are random but deterministic.
    """
    keras.utils.set_random_seed(seed)
    inputs = {
        "slow": keras.Input((num_frames // alpha, None, None, 3), name="slow"),
        "fast": keras.Input((num_frames, None, None, 3), name="fast"),
    }
    s = keras.layers.Conv3D(width, (1, 3, 3), strides=(1, 4, 4), name="slow_conv")(inputs["slow"])
    s = keras.layers.BatchNormalization(name="slow_bn")(s)
    f = keras.layers.Conv3D(width // 2, (3, 3, 3), strides=(alpha, 4, 4), padding="same",
                            name="fast_conv")(inputs["fast"])
    s = keras.layers.AveragePooling3D((num_frames // alpha, 4, 4), strides=1)(s)
    f = keras.layers.AveragePooling3D((num_frames // alpha, 4, 4), strides=1)(f)
    x = keras.layers.Concatenate()([s, f])
    per_pos = keras.layers.Dense(num_classes, name="head_projection")(x)
    logits = keras.ops.mean(per_pos, axis=(1, 2, 3))
    probs = keras.ops.mean(keras.ops.softmax(per_pos, axis=-1), axis=(1, 2, 3))
    feats = keras.ops.mean(x, axis=(1, 2, 3))
    model = keras.Model(inputs, {"logits": logits, "probabilities": probs, "features": feats})
    # Non-trivial BN statistics so that a forgotten `training=False` shows up in the comparison.
    bn = model.get_layer("slow_bn")
    bn.moving_mean.assign(np.linspace(-0.1, 0.1, width).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 1.5, width).astype("float32"))
    return model
