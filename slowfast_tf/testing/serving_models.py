"""Tiny models shared by the serving tests (not part of the public API)."""

from __future__ import annotations

import keras
import numpy as np

from slowfast_tf import compat
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


def randomize_batch_norm(model, rng: np.random.Generator) -> None:
    """Gives every BatchNorm of `model` random statistics and affine weights drawn from `rng`
    (identity BNs would hide a forgotten `training=False`, a skipped branch or a no-op fold)."""
    for layer in compat.flatten_layers(model, include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))


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
    randomize_batch_norm(model, rng)
    # Larger head weights than N(0, 0.01) so the class probabilities are far from uniform.
    kernel = model.get_layer("head_projection").kernel
    kernel.assign(rng.normal(0, 0.1, kernel.shape).astype("float32"))
    return model


# A tiny SlowFast AVA detector (R18-like, width 4) on the synthetic AVA preset: 8 frames, 4 box
# slots, test short side 32.
DETECTOR_LABELS = ["flicker_low", "flicker_high", "orbit_cw", "orbit_ccw", "striped"]
DETECTOR_NAME = "tiny_detector"


def detector_data_config():
    """`AvaDataConfig` of the tiny detector (`ava_synthetic` at 8 frames, 5 classes)."""
    import dataclasses

    from slowfast_tf.data.ava.ava_pipeline import AVA_DATA_PRESETS

    return dataclasses.replace(AVA_DATA_PRESETS["ava_synthetic"], num_frames=8,
                               num_classes=len(DETECTOR_LABELS))


def tiny_detector(seed: int = 0) -> keras.Model:
    """A tiny `SlowFastDetector` whose head gives clearly different per-box probabilities."""
    from slowfast_tf import models

    keras.utils.set_random_seed(seed)
    model = models.build_model("slowfast_r50_ava_32x2", num_classes=len(DETECTOR_LABELS),
                               depth=18, width=4, beta_inv=4, fusion_kernel_size=3, num_frames=8,
                               max_boxes=detector_data_config().max_boxes)
    # N(0, 0.01) head weights leave every sigmoid near 0.5; larger ones separate the boxes.
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "projection" in weight.path and weight.path.endswith("kernel"):
            weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    return model
