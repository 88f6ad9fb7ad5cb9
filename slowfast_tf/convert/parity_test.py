"""Numerical parity of converted weights against PyTorchVideo, for all checkpoint readers.

Each case builds the PyTorchVideo model with a preset's architecture (random weights, random
BN statistics, eval mode), writes it as a PTV hub ``.pyth``, a PySlowFast ``.pyth``, a
PySlowFast-wrapped PTV ``.pyth`` and a Caffe2 ``.pkl``, converts each into the Keras model and
compares logits and every per-stage endpoint on random clips.

Cost control (2 CPU cores): clips are 64x64 with the head pool sized for a 1x1 grid (the same
head arithmetic as 224 with a 7x7 pool). The narrow cases (width 16: all weights of the R50
layout, 1/16 of the channels) run by default; the full-width SlowFast R50 8x8 is ``slow`` and the
full-width 4x16 / Slow-only cases are ``large``.
"""

import importlib.util

import numpy as np
import pytest

from slowfast_tf.convert import checkpoints, keras_loader, torch_reference, verify
from slowfast_tf.models import build_model
from slowfast_tf.testing import parity_fixtures

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorchvideo") is None,
    reason="parity tests need torch and pytorchvideo (the dev extra)",
)

CROP = 64
REL_TOL = 1e-4


ALL_FORMATS = ("pytorchvideo", "pyslowfast", "pyslowfast-wrapped-ptv", "caffe2")


def _run_case(tmp_path, preset, width, batch_size=2, formats=ALL_FORMATS, grid_crop=None):
    model = build_model(preset, num_classes=400, width=width, train_crop_size=CROP)
    arch = verify.reference_arch(model)
    assert arch is not None
    assert arch.head_pool_hw == CROP // 32
    inputs = verify.random_clip(model, CROP, batch_size=batch_size, seed=3)
    reference = parity_fixtures.make_reference(arch, inputs, seed=1)
    ref_logits, ref_endpoints = torch_reference.run_reference(reference, inputs, arch)
    # Random BN statistics must not collapse the logits, or the top-5 check means nothing.
    assert np.std(ref_logits) > 0.1

    results = {}
    written = parity_fixtures.write_all_formats(reference, str(tmp_path))
    states = {}
    for label, source, path in written:
        # Every reader yields the same PySlowFast-named tensors (exactly) ...
        states[label] = checkpoints.read_checkpoint(path, source)[0]
        assert states[label].keys() == states["pytorchvideo"].keys(), label
        for name, value in states[label].items():
            np.testing.assert_array_equal(value, states["pytorchvideo"][name], err_msg=name)
    for label, source, path in written:
        if label not in formats:
            continue
        # ... and the end-to-end conversion from the file matches the reference.
        report = keras_loader.convert_checkpoint(path, source, model)
        assert report.num_tensors == len(model.weights), label
        assert report.checkpoint_num_classes == 400 and not report.head_dropped
        logits, endpoints = verify.run_keras(model, inputs)
        parity = verify.compare_outputs(logits, endpoints, ref_logits, ref_endpoints)
        results[label] = parity
        assert parity.logits_relative_diff <= REL_TOL, (label, parity.format())
        assert parity.worst_endpoint_relative_diff <= REL_TOL, (label, parity.format())
        assert parity.top5_equal and parity.top1_agree == 1.0, (label, parity.format())
    assert set(results) == set(formats)
    expected = {"slowfast": 10}.get(model.backbone.arch, 5)
    assert all(len(r.endpoints) == expected for r in results.values())
    if grid_crop:
        # Fully convolutional testing: a larger crop with the train-crop head pool leaves a grid
        # of per-position logits; PTV averages them (AdaptiveAvgPool3d) and so does Keras.
        big = verify.random_clip(model, grid_crop, batch_size=1, seed=5)
        ref_logits, ref_endpoints = torch_reference.run_reference(reference, big, arch)
        logits, endpoints = verify.run_keras(model, big)
        parity = verify.compare_outputs(logits, endpoints, ref_logits, ref_endpoints)
        grid = endpoints[f"{model.pathways[0]}_res5"].shape[2] - arch.head_pool_hw + 1
        assert grid == 2, grid
        assert parity.logits_relative_diff <= REL_TOL, parity.format()
        assert parity.top5_equal, parity.format()
    return results


def test_parity_narrow_slowfast_r50_8x8_all_readers(tmp_path):
    _run_case(tmp_path, "slowfast_r50_8x8", width=16)


@pytest.mark.parametrize("preset", ["slowfast_r50_4x16", "slow_r50_8x8", "i3d_r50_8x8"])
def test_parity_narrow_r50_variants(tmp_path, preset):
    # Slow-only also runs a 96 crop: 3x3 res5 under a 2x2 head pool = a 2x2 logit grid.
    grid_crop = 96 if preset == "slow_r50_8x8" else None
    _run_case(tmp_path, preset, width=16, formats=("pytorchvideo", "caffe2"), grid_crop=grid_crop)


@pytest.mark.slow
def test_parity_full_width_slowfast_r50_8x8(tmp_path):
    # The real SlowFast R50 8x8 layout (34.6M parameters), every reader.
    _run_case(tmp_path, "slowfast_r50_8x8", width=64, batch_size=1)


@pytest.mark.large
@pytest.mark.parametrize(
    "preset", ["slowfast_r50_4x16", "slow_r50_8x8", "c2d_r50_8x8", "i3d_r50_8x8"]
)
def test_parity_full_width_r50_variants(tmp_path, preset):
    _run_case(tmp_path, preset, width=64, batch_size=1, formats=("pytorchvideo",))


def test_random_bn_statistics_are_not_identity():
    """Guards the fixture: identity BN statistics would hide mean/var or gamma/beta swaps."""
    arch = torch_reference.ReferenceArch(
        pathways=("slow",), family="slow", width=8, slow_frames=2, head_pool_hw=1, num_classes=5
    )
    inputs = {"slow": np.random.default_rng(0).standard_normal((1, 2, 32, 32, 3), np.float32)}
    model = parity_fixtures.make_reference(arch, inputs)
    bn = model.blocks[0].norm
    for tensor in (bn.running_mean, bn.running_var - 1, bn.weight - 1, bn.bias):
        assert float(tensor.detach().abs().min()) > 0
