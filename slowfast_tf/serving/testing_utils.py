"""Tiny models shared by the serving tests (not part of the public API)."""

from __future__ import annotations

import keras
import numpy as np

from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.models import SlowFastBackbone, SlowFastVideoClassifier

LABELS = ["abseiling", "bowling", "cartwheeling", "dancing ballet", "eating spaghetti"]
MODEL_NAME = "tiny_slowfast"

# R18-like SlowFast at 8 fast frames; `train_crop_size=32` fixes a 1x1 head kernel, so a 64 px
# serving crop leaves a 2x2 grid and exercises the mean-over-positions eval head (as 256 does).
TINY_BACKBONE = dict(arch="slowfast", depth=18, width=8, beta_inv=4, num_frames=8, alpha=4)
# Its clip spec: 72 px short side, 64 px centre crop (a real resize + crop, and a 2x2 head grid,
# like 256 / 256 with the 224-trained head).
TINY_CLIP_SPEC = ClipSpec(num_frames=8, sampling_rate=2, alpha=4, train_crop=32, test_crop=64,
                          test_short_side=72, train_jitter_scales=(32, 40))


def tiny_classifier(num_classes: int = 5, seed: int = 0, **backbone_overrides) -> keras.Model:
    """A tiny `SlowFastVideoClassifier` with randomised BN statistics and gammas.

    Zero-initialised `c_bn` gammas and identity BN statistics would hide a forgotten
    `training=False` or a skipped residual branch, so every BN weight gets random values.
    """
    keras.utils.set_random_seed(seed)
    backbone = SlowFastBackbone(**{**TINY_BACKBONE, **backbone_overrides})
    clip_spec = None if backbone_overrides else TINY_CLIP_SPEC.to_dict()
    model = SlowFastVideoClassifier(
        backbone, num_classes=num_classes, train_crop_size=32, clip_spec=clip_spec
    )
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    # Larger head weights than N(0, 0.01) so the class probabilities are far from uniform.
    kernel = model.get_layer("head_projection").kernel
    kernel.assign(rng.normal(0, 0.1, kernel.shape).astype("float32"))
    return model
