"""``roi_align`` (keras.ops) and the torch RoIAlign against the literal NumPy definition."""

import importlib.util
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.models.common.roi_align import RoIAlign, roi_align
from slowfast_tf.testing.roi_align_reference import roi_align_reference

H, W, C = 9, 11, 3
# Boxes in input pixels for spatial_scale 1/16 (a 144x176 image -> 9x11 features):
BOXES_16 = np.array(
    [
        [16.0, 20.0, 100.0, 130.0],  # ordinary
        [0.0, 0.0, 176.0, 144.0],  # the whole image (border samples clamp to the last pixel)
        [150.0, 120.0, 176.0, 144.0],  # bottom-right corner
        [-40.0, -30.0, 60.0, 50.0],  # partially outside (top-left)
        [120.0, 100.0, 260.0, 230.0],  # partially outside (bottom-right)
        [300.0, 300.0, 340.0, 360.0],  # entirely outside -> zeros
        [50.0, 60.0, 55.0, 62.0],  # tiny: < 1 feature pixel
        [70.3, 33.1, 70.3, 33.1],  # zero size
        [90.0, 90.0, 80.0, 70.0],  # inverted
        [-700.0, -400.0, 900.0, 700.0],  # huge: adaptive grid 15 x 10
    ],
    dtype=np.float32,
)


def _features(seed=0, height=H, width=W, batch=2):
    return np.random.default_rng(seed).normal(size=(batch, height, width, C)).astype(np.float32)


def _reference(features, boxes, **kwargs):
    """``[B, M, 4]`` boxes -> NumPy reference in the Keras layout ``[B, M, oh, ow, C]``."""
    batch, num = boxes.shape[:2]
    rois = np.concatenate(
        [np.repeat(np.arange(batch, dtype=np.float32), num)[:, None], boxes.reshape(-1, 4)], 1
    )
    out = roi_align_reference(np.transpose(features, (0, 3, 1, 2)), rois, **kwargs)
    return np.transpose(out, (0, 2, 3, 1)).reshape((batch, num) + out.shape[2:] + (C,))


def _keras(features, boxes, **kwargs):
    return keras.ops.convert_to_numpy(roi_align(features, boxes, **kwargs))


def _batch_boxes(boxes, seed=1):
    """Two images with different box sets (the second is the first jittered)."""
    jitter = np.random.default_rng(seed).uniform(-7, 7, size=boxes.shape).astype(np.float32)
    return np.stack([boxes, boxes + jitter])


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_keras_matches_definition(aligned, sampling_ratio):
    features = _features()
    boxes = _batch_boxes(BOXES_16)
    kwargs = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=sampling_ratio, aligned=aligned)
    want = _reference(features, boxes, **kwargs)
    got = _keras(features, boxes, **kwargs)
    assert got.shape == (2, len(BOXES_16), 7, 7, C)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.abs(want).max() > 0.5  # the boxes sample real values
    np.testing.assert_array_equal(want[0, 5], 0.0)  # entirely outside


@pytest.mark.parametrize("aligned", [True, False])
def test_keras_matches_definition_scale_one_and_rectangular_output(aligned):
    # Feature-pixel boxes with sample positions landing exactly on -1, 0, H and integers.
    features = _features(seed=2, height=6, width=5)
    boxes = np.array(
        [
            [-1.0, -1.0, 5.0, 6.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.25, 0.5, 4.75, 5.5],
            [-40.0, -3.0, 60.0, 9.0],  # adaptive grid 15 in x
            [4.0, 5.0, 5.0, 6.0],  # the last pixel
            [2.0, 2.0, 2.4, 2.2],
        ],
        dtype=np.float32,
    )[None]
    for output_size in ((7, 7), (3, 5)):
        kwargs = dict(output_size=output_size, spatial_scale=1.0, sampling_ratio=0, aligned=aligned)
        np.testing.assert_allclose(
            _keras(features[:1], boxes, **kwargs), _reference(features[:1], boxes, **kwargs),
            atol=1e-5, rtol=0,
        )  # fmt: skip


def test_random_boxes_match_definition():
    rng = np.random.default_rng(5)
    features = _features(seed=3)
    centre = rng.uniform(-20, 200, size=(2, 12, 2))
    size = np.exp(rng.uniform(np.log(2.0), np.log(400.0), size=(2, 12, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)
    for aligned in (True, False):
        kwargs = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=aligned)
        np.testing.assert_allclose(
            _keras(features, boxes, **kwargs), _reference(features, boxes, **kwargs), atol=1e-5
        )


def test_dynamic_feature_shape_equals_static():
    features = _features(seed=4)
    boxes = _batch_boxes(BOXES_16)
    fn = tf.function(
        lambda f, b: roi_align(f, b, 7, 1 / 16, 0, True),
        input_signature=[
            tf.TensorSpec([None, None, None, C], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
        ],
    )
    # Same result when H and W are only known at run time (the window size becomes a tensor).
    want = _reference(features, boxes, output_size=7, spatial_scale=1 / 16)
    np.testing.assert_allclose(fn(features, boxes).numpy(), want, atol=1e-5, rtol=0)


def test_layer_config_round_trip_and_shape():
    layer = RoIAlign(output_size=(7, 5), spatial_scale=0.0625, sampling_ratio=0, aligned=False)
    config = json.loads(json.dumps(layer.get_config()))
    revived = RoIAlign.from_config(config)
    assert revived.get_config() == layer.get_config()
    features, boxes = _features(), _batch_boxes(BOXES_16)
    out = revived([features, boxes])
    assert tuple(out.shape) == (2, len(BOXES_16), 7, 5, C)
    assert revived.compute_output_shape(((2, H, W, C), (2, 10, 4))) == (2, 10, 7, 5, C)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(_features(), _batch_boxes(BOXES_16), sampling_ratio=-1)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(_features(), _batch_boxes(BOXES_16), output_size=0)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_torch_roi_align_matches_definition(aligned, sampling_ratio):
    import torch

    from slowfast_tf.convert.torch_reference import torch_roi_align_module

    features = _features(seed=6)
    boxes = _batch_boxes(BOXES_16)
    rois = np.concatenate([np.repeat([0.0, 1.0], len(BOXES_16))[:, None], boxes.reshape(-1, 4)], 1)
    kwargs = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=sampling_ratio, aligned=aligned)
    want = roi_align_reference(np.transpose(features, (0, 3, 1, 2)), rois, **kwargs)
    layer = torch_roi_align_module()(**kwargs)
    got = layer(
        torch.from_numpy(np.ascontiguousarray(np.transpose(features, (0, 3, 1, 2)))),
        torch.from_numpy(rois.astype(np.float32)),
    ).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


_BACKEND_CODE = """
import keras, numpy as np
from slowfast_tf.models.common.roi_align import roi_align
from slowfast_tf.models.common.roi_align_test import BOXES_16, _batch_boxes, _features, _reference
assert keras.backend.backend() == {backend!r}
features, boxes = _features(), _batch_boxes(BOXES_16)
fn = lambda f, b: roi_align(f, b, 7, 1 / 16, 0, True)
if {backend!r} == "jax":
    import jax
    fn = jax.jit(fn)  # static shapes: the adaptive sampling traces once, with no host sync
got = keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(features), keras.ops.convert_to_tensor(boxes)))
want = _reference(features, boxes, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=True)
print("max diff", float(np.abs(got - want).max()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backends(backend):
    import os
    import subprocess
    import sys

    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _BACKEND_CODE.format(backend=backend)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    diff = float(result.stdout.split("max diff")[-1])
    assert diff <= 1e-5, result.stdout
