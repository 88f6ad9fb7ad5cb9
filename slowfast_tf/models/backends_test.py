"""Every model family runs on the TensorFlow, JAX and PyTorch Keras backends with the same numbers.

Keras fixes its backend at import, so each backend runs in its own subprocess
(``KERAS_BACKEND=...``), started once for all models (interpreter start-up and JAX compilation are
the cost, so the three start together):

1. tensorflow builds every model of ``CASES``, sets deterministic weights, saves them as
   ``.weights.h5`` (the format ``python -m slowfast_tf.convert`` writes) and writes a marker.
2. jax and torch build the same models meanwhile (their own initializers run, as for any user),
   wait for the marker and load the TF-saved ``.weights.h5``.
3. Each backend writes the inference logits of every model and, for the ``train`` cases, every
   weight before and after one ``model.fit`` step (SGD, no dropout) on a tiny numpy batch.

The tests then check, per backend and model: the logits equal TensorFlow's, the tiny SlowFast
non-local model reproduces the committed golden logits (``slowfast_golden_test``), the ``fit``
step changed every trainable weight, and it gave the same new weights and BN statistics as on
TensorFlow.

Adding a model (e.g. the AVA detector) is one line in ``CASES``.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
import pytest

import slowfast_tf
from slowfast_tf.models import build_model
from slowfast_tf.models.slowfast import slowfast_golden_test as golden
from slowfast_tf.utils.fileio import atomic_open, atomic_write_text

pytestmark = pytest.mark.slow

BACKENDS = ("tensorflow", "jax", "torch")
SF_TINY = dict(depth=18, width=8, beta_inv=4, num_frames=8, image_size=32)
SINGLE_TINY = dict(depth=18, width=8, num_frames=4, image_size=32)
R21D_TINY = dict(base_filters=4, num_frames=8, image_size=32)


class Case(NamedTuple):
    build: Callable[[], keras.Model]  # a tiny model; no argument
    train: bool = False  # also run (and compare) one `model.fit` step
    # (model, numpy Generator) -> model inputs; None: normal noise shaped like `model.input`.
    inputs: Callable | None = None


def _detector_inputs(model, rng):
    inputs = {
        key: rng.normal(size=(BATCH, *model.input[key].shape[1:])).astype("float32")
        for key in model.pathways
    }
    corner = rng.uniform(0.0, 0.6, size=(BATCH, 3, 2))
    size = rng.uniform(0.2, 0.4, size=(BATCH, 3, 2))
    inputs["boxes"] = np.concatenate([corner, corner + size], axis=-1).astype("float32")
    inputs["box_mask"] = np.array([[1, 1, 0], [1, 0, 1]], "float32")  # one padding row each
    return inputs


# One line per model: name -> builder. `dropout=0.0` makes the fit step deterministic.
CASES = {
    "slowfast_nonlocal": Case(  # the golden-test model (SlowFast + dot-product non-local)
        lambda: build_model("slowfast_nln_r50_8x8", num_classes=5, dropout=0.0, **golden.CONFIG),
        train=True,
    ),
    "slowfast_time_to_channel_sum_gray_diff_any_size": Case(  # image_size=None: 40x48 clips
        lambda: build_model(
            "slowfast_r50_8x8", num_classes=3, lateral_type="time_to_channel_sum",
            fast_input="grayscale_time_difference", train_crop_size=32,
            **{**SF_TINY, "image_size": None},
        )
    ),
    "slowfast_time_strided_sample_half_res": Case(
        lambda: build_model(
            "slowfast_r50_4x16", num_classes=3, lateral_type="time_strided_sample",
            fast_resolution="half", **SF_TINY,
        )
    ),
    "slow": Case(lambda: build_model("slow_r50_8x8", num_classes=3, **SINGLE_TINY)),
    "fast_time_difference": Case(
        lambda: build_model(
            "fast_r50_32x2", num_classes=3, fast_input="time_difference", **SF_TINY
        )
    ),
    "c2d_nonlocal_softmax": Case(
        lambda: build_model(
            "c2d_nln_r50_8x8", num_classes=3, nonlocal_locations=[[], [1], [], []], **SINGLE_TINY
        )
    ),
    "i3d": Case(lambda: build_model("i3d_r50_8x8", num_classes=3, **SINGLE_TINY)),
    "r2plus1d": Case(lambda: build_model("r2plus1d_r18", num_classes=3, **R21D_TINY)),
    "r2d": Case(lambda: build_model("r2d_r18", num_classes=3, **R21D_TINY)),
    "mc3": Case(lambda: build_model("mc3_r18", num_classes=3, **R21D_TINY)),
    "ava_detector": Case(
        lambda: build_model("slowfast_r50_ava_32x2", num_classes=3, max_boxes=3, **SF_TINY),
        inputs=_detector_inputs,
    ),
}
GOLDEN_CASE = "slowfast_nonlocal"
BATCH = 2  # >= 2 so training-mode BN normalises with real batch statistics
DYNAMIC_SIDES = (40, 48)  # H, W fed to models built with image_size=None
LEARNING_RATE = 0.1

# Compile-time settings for the JAX process only (the numbers must still match TF's):
# XLA:CPU compiles ~5x faster at LLVM opt level 0, and the non-partitionable threefry PRNG
# compiles each initializer shape ~5x faster (it changes only which random numbers initializers
# draw). JAX compiles every op per shape, so one process shares that work across all models.
# Set JAX_COMPILATION_CACHE_DIR to keep the compiled programs across runs (~3x faster reruns).
BACKEND_ENV = {
    "jax": {
        "JAX_PLATFORMS": "cpu",
        "JAX_THREEFRY_PARTITIONABLE": "0",
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    },
}
# A bias followed by a BatchNorm is cancelled by the batch mean in training mode, so its gradient
# is 0 by construction (PySlowFast's non-local `conv_out` has that bias too): it moves by float
# noise only (~1e-8), every other weight by > 1e-3 in the fit step.
BIAS_BEFORE_BN = ("_conv_out/bias",)
MIN_STEP = 1e-5
WORKER_TIMEOUT_S = 1500  # the whole batch; ~1-2 min on an idle 2-core machine


def _random_inputs(name, model):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if CASES[name].inputs is not None:
        return CASES[name].inputs(model, rng)

    def clip(shape):
        sides = iter(DYNAMIC_SIDES)
        size = [BATCH] + [next(sides) if d is None else d for d in shape[1:]]
        return rng.normal(size=size).astype("float32")

    return {key: clip(tensor.shape) for key, tensor in model.input.items()}


def _golden_inputs():
    frames = np.random.default_rng(0).integers(0, 256, size=(1, 8, 32, 32, 3), dtype=np.uint8)
    return golden._inputs(frames)


def _infer(model, inputs):
    if keras.backend.backend() == "jax":
        # JAX dispatches an eager call op by op, compiling each op per shape: one jit-compiled
        # program (`predict`) is several times cheaper.
        return model.predict(inputs, batch_size=BATCH, verbose=0)
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def _weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


def _fit_step(model, inputs, num_classes):
    labels = np.arange(BATCH) % num_classes
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Each backend's default, except TF without XLA as `train.py` (--jit_compile=false).
        jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
    )
    before = _weights(model)
    history = model.fit(inputs, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after = _weights(model)
    trainable = {id(w) for w in model.trainable_weights}
    out = {
        "fit_steps": np.array(model.optimizer.iterations),
        "fit_loss": np.array(history.history["loss"]),
        "fit_trainable": np.array([id(w) in trainable for w in model.weights]),
    }
    for i, (b, a) in enumerate(zip(before, after)):
        out[f"before_{i}"], out[f"after_{i}"] = b, a
    return out


def _wait_for(path, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {timeout_s} s (the tensorflow worker failed?)")
        time.sleep(0.5)


def _worker(backend, ref_dir, out_dir):
    """Runs every case on this process's backend; see the module docstring."""
    if keras.backend.backend() != backend:
        raise RuntimeError(f"expected backend {backend!r}, got {keras.backend.backend()!r}")
    ready = os.path.join(ref_dir, "READY")
    models = {name: case.build() for name, case in CASES.items()}
    if backend == "tensorflow":
        for name, model in models.items():
            golden._deterministic_weights(model)
            model.save_weights(os.path.join(ref_dir, f"{name}.weights.h5"))
        atomic_write_text(ready, "ok\n")
    else:
        _wait_for(ready, WORKER_TIMEOUT_S)
        for name, model in models.items():
            model.load_weights(os.path.join(ref_dir, f"{name}.weights.h5"))
    for name, model in models.items():
        inputs = _random_inputs(name, model)
        out = {"logits": _infer(model, inputs)}
        if name == GOLDEN_CASE:
            out["golden_logits"] = _infer(model, _golden_inputs())
        if CASES[name].train:
            out.update(_fit_step(model, inputs, model.num_classes))
        out["weight_paths"] = np.array([w.path for w in model.weights])
        with atomic_open(os.path.join(out_dir, f"{name}.npz"), "wb") as f:
            np.savez(f, **out)
    summary = {"imported_tensorflow": "tensorflow" in sys.modules}
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary))


def _available(backend):
    return backend == "tensorflow" or importlib.util.find_spec(backend) is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts one worker per available backend, all at once; returns {backend: (rc, log, dir)}."""
    root = tmp_path_factory.mktemp("backends")
    ref_dir = root / "ref"
    ref_dir.mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(slowfast_tf.__file__)))
    procs = {}
    for backend in filter(_available, BACKENDS):
        out_dir = root / backend
        out_dir.mkdir()
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
            **BACKEND_ENV.get(backend, {}),
        }
        code = (
            "from slowfast_tf.models.backends_test import _worker; "
            f"_worker({backend!r}, {str(ref_dir)!r}, {str(out_dir)!r})"
        )
        log = open(root / f"{backend}.log", "w")  # noqa: SIM115 - closed below
        procs[backend] = (
            subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log),
            log,
            out_dir,
        )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    results = {}
    try:
        for backend, (proc, log, out_dir) in procs.items():
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.close()
            results[backend] = (rc, (root / f"{backend}.log").read_text(), out_dir)
    finally:
        for proc, log, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return results


def _result(runs, backend):
    if backend not in runs:
        pytest.skip(f"{backend} is not installed (pip install -e '.[dev]' installs it)")
    rc, log, out_dir = runs[backend]
    assert rc == 0, f"{backend} worker failed (rc={rc}):\n{log[-4000:]}"
    return out_dir


def _load(runs, backend, name):
    with np.load(_result(runs, backend) / f"{name}.npz") as data:
        return dict(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_logits_on_every_backend(runs, backend):
    expected = np.load(golden.GOLDEN_PATH)["logits"]
    got = _load(runs, backend, GOLDEN_CASE)["golden_logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_weights_h5_from_tensorflow_give_identical_logits(runs, backend, name):
    reference = _load(runs, "tensorflow", name)
    got = _load(runs, backend, name)
    assert list(got["weight_paths"]) == list(reference["weight_paths"])
    assert np.abs(reference["logits"]).max() > 1e-2  # not trivially ~0
    # Observed: <= 3e-7 apart.
    np.testing.assert_allclose(got["logits"], reference["logits"], rtol=1e-5, atol=1e-5)


TRAIN_CASES = sorted(name for name, case in CASES.items() if case.train)


@pytest.mark.parametrize("name", TRAIN_CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_step_changes_every_trainable_weight(runs, backend, name):
    data = _load(runs, backend, name)
    assert int(data["fit_steps"]) == 1
    assert np.all(np.isfinite(data["fit_loss"]))
    trainable = np.flatnonzero(data["fit_trainable"])
    assert len(trainable) > 10
    steps = {
        str(data["weight_paths"][i]): np.abs(data[f"after_{i}"] - data[f"before_{i}"]).max()
        for i in trainable
    }
    zero_by_construction = {p for p in steps if p.endswith(BIAS_BEFORE_BN)}
    unchanged = [p for p, step in steps.items() if step <= MIN_STEP]
    assert sorted(unchanged) == sorted(zero_by_construction), (
        f"trainable weights that the fit step left (almost) unchanged: {unchanged[:5]}"
    )


@pytest.mark.parametrize("name", TRAIN_CASES)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_fit_step_matches_tensorflow(runs, backend, name):
    """Same start weights and batch: the SGD step and the BN moving statistics agree to 1% of
    each weight's largest step (observed: 0.2%; training-mode BN over 2 clips with 1x1 maps at
    res5 amplifies float differences)."""
    reference = _load(runs, "tensorflow", name)
    got = _load(runs, backend, name)
    np.testing.assert_allclose(got["fit_loss"], reference["fit_loss"], rtol=1e-4)
    for i, path in enumerate(reference["weight_paths"]):
        np.testing.assert_array_equal(got[f"before_{i}"], reference[f"before_{i}"], err_msg=path)
        step = got[f"after_{i}"] - got[f"before_{i}"]
        reference_step = reference[f"after_{i}"] - reference[f"before_{i}"]
        np.testing.assert_allclose(
            step, reference_step, rtol=0, atol=1e-6 + 1e-2 * np.abs(reference_step).max(),
            err_msg=path,
        )


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_models_run_without_tensorflow(runs, backend):
    """Building, loading ``.weights.h5``, inference and ``fit`` never import TensorFlow."""
    summary = json.loads((_result(runs, backend) / "summary.json").read_text())
    assert summary["imported_tensorflow"] is False
