"""Golden-tensor test: a tiny SlowFast (+ non-local) with deterministic weights must keep
producing the committed logits and endpoint (timm-style regression test). The JAX and torch
backends reproduce the same logits in ``slowfast_tf/models/backends_test.py``.

Regenerate (only after an intentional numerics change) with:
    python -m slowfast_tf.models.slowfast.slowfast_golden_test
"""

import os
import zlib

import numpy as np

from slowfast_tf.models.slowfast.slowfast_presets import build_model

GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "testdata", "slowfast_tiny_golden.npz")
CONFIG = dict(
    depth=18,
    width=8,
    beta_inv=4,
    num_frames=8,
    image_size=32,
    nonlocal_locations=[[], [1], [], []],
)


def _deterministic_weights(model):
    """Sets every weight from a numpy RNG seeded by the weight's path, so the values depend
    neither on Keras's initializers nor on the order of weights."""
    for weight in model.weights:
        rng = np.random.default_rng(zlib.crc32(weight.path.encode()))
        shape = tuple(weight.shape)
        name = weight.path.rsplit("/", 1)[-1]
        if name == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "gamma":
            value = 0.4 + 0.05 * rng.normal(size=shape)  # < 1 so 16 residual blocks stay O(1)
        elif name == "kernel" and len(shape) == 5:  # He-scaled so activations stay O(1)
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        else:
            value = 0.1 * rng.normal(size=shape)
        weight.assign(value.astype("float32"))


def _inputs(frames_uint8):
    fast = (frames_uint8.astype("float32") / 255.0 - 0.45) / 0.225
    # pack_pathways: slow = fast[linspace(0, T-1, T // alpha)] -> frames [0, 7]
    slow = fast[:, np.linspace(0, fast.shape[1] - 1, fast.shape[1] // 4).astype(int)]
    return {"slow": slow, "fast": fast}


def _run(compiled=False):
    model = build_model("slowfast_nln_r50_8x8", num_classes=5, **CONFIG)
    _deterministic_weights(model)
    frames = np.random.default_rng(0).integers(0, 256, size=(1, 8, 32, 32, 3), dtype=np.uint8)
    inputs = _inputs(frames)
    if compiled:  # one jit-compiled program instead of op-by-op dispatch (JAX eager is slow)
        logits = model.predict(inputs, verbose=0)
        endpoint = model.backbone.predict(inputs, verbose=0)["slow_res4"]
    else:
        logits = np.asarray(model(inputs, training=False))
        endpoint = np.asarray(model.backbone(inputs, training=False)["slow_res4"])
    return frames, logits, endpoint


def _check(compiled=False):
    golden = np.load(GOLDEN_PATH)
    frames, logits, endpoint = _run(compiled)
    np.testing.assert_array_equal(frames, golden["frames"])
    np.testing.assert_allclose(endpoint, golden["slow_res4"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(logits, golden["logits"], rtol=1e-3, atol=1e-4)
    assert np.abs(golden["logits"]).max() > 1e-2  # the golden values are not trivially ~0


def test_golden_outputs():
    _check()


if __name__ == "__main__":
    frames, logits, endpoint = _run()
    np.savez_compressed(GOLDEN_PATH, frames=frames, logits=logits, slow_res4=endpoint)
    print(f"wrote {GOLDEN_PATH}: logits={logits}")
