"""AVA detector parity: converted weights give PyTorchVideo's ``create_slowfast_with_roi_head``
per-box outputs, from every checkpoint layout (PTV hub, PySlowFast, wrapped PTV, Caffe2).

The PTV model runs with the torch RoIAlign of ``torch_reference`` (itself tested against the
NumPy definition). Narrow cases (width 16: every weight of the R50 layout, 1/16 of the
channels) on 64x96 clips run by default; the full-width 224 case is ``large``.
"""

import importlib.util
import pickle

import numpy as np
import pytest

from slowfast_tf import models
from slowfast_tf.convert import __main__ as convert_main
from slowfast_tf.convert import checkpoints, keras_loader, torch_reference, verify
from slowfast_tf.testing import parity_fixtures

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorchvideo") is None,
    reason="parity tests need torch and pytorchvideo (the dev extra)",
)

REL_TOL = 1e-4
# Normalised (x1, y1, x2, y2): ordinary, whole frame, partially outside, tiny, border strip.
BOXES = np.array(
    [
        [[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0], [-0.1, 0.5, 0.4, 1.2], [0.5, 0.5, 0.51, 0.52]],
        [[0.3, 0.1, 0.9, 0.7], [0.9, 0.0, 1.0, 1.0], [0.2, 0.3, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0]],
    ],
    dtype=np.float32,
)
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=np.float32)


def _clips(model, height, width, batch=2, seed=3):
    rng = np.random.default_rng(seed)
    return {
        key: rng.standard_normal((batch, frames, height, width, 3)).astype(np.float32)
        for key, frames in model.backbone.input_frames.items()
    }


def _keras_outputs(eval_model, inputs):
    outputs = eval_model({**inputs, "boxes": BOXES, "box_mask": MASK}, training=False)
    return {k: np.asarray(v) for k, v in outputs.items()}


def _check(got, reference, reference_logits):
    valid = MASK > 0
    scale = np.abs(reference_logits[valid]).max()
    assert scale > 0.5 and np.std(reference[valid]) > 0.02  # outputs far from trivial
    diff = np.abs(got["logits"] - reference_logits)[valid].max()
    assert diff / scale <= REL_TOL, (diff, scale)
    np.testing.assert_allclose(got["probabilities"], reference, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["probabilities"][~valid], 0.0)


def _reference_outputs(reference, inputs, arch):
    probabilities = torch_reference.run_ptv_detector(reference, inputs, BOXES, MASK, arch)
    activation = reference.detection_head.activation
    reference.detection_head.activation = None
    try:
        logits = torch_reference.run_ptv_detector(reference, inputs, BOXES, MASK, arch)
    finally:
        reference.detection_head.activation = activation
    return probabilities, logits


def _run_case(tmp_path, preset, width, height, frame_width, formats, num_frames=16):
    model = models.build_model(preset, width=width, num_frames=num_frames)
    eval_model = model.build_eval_model()  # shares the weights each conversion writes
    arch = verify.reference_arch(model)
    assert arch is not None and arch.num_classes == 80
    inputs = _clips(model, height, frame_width)
    reference = parity_fixtures.make_detector_reference(arch, inputs, aligned=model.aligned, seed=1)
    assert reference.detection_head.roi_layer.aligned is model.aligned
    ref_probabilities, ref_logits = _reference_outputs(reference, inputs, arch)
    written = parity_fixtures.write_detector_formats(reference, str(tmp_path))
    states = {label: checkpoints.read_checkpoint(path, source)[0] for label, source, path in written}
    for label, state in states.items():
        # Every layout reads to the same PySlowFast-named tensors (exactly) ...
        assert state.keys() == states["pyslowfast"].keys(), label
        for name, value in state.items():
            np.testing.assert_array_equal(value, states["pyslowfast"][name], err_msg=name)
    assert "head.projection.weight" in states["pytorchvideo"]
    for label, source, path in written:
        if label not in formats:
            continue
        # ... and converting the file gives the reference's per-box outputs.
        report = keras_loader.convert_checkpoint(path, source, model)
        assert report.num_tensors == len(model.weights), label
        assert report.checkpoint_num_classes == 80 and not report.head_dropped
        _check(_keras_outputs(eval_model, inputs), ref_probabilities, ref_logits)
    return model, written


@pytest.mark.slow
def test_ptv_detection_layout_parity_all_formats(tmp_path):
    # PyTorchVideo slowfast_r50_detection: RoIAlign aligned=False; non-square 64x96 frames.
    _run_case(
        tmp_path, "slowfast_r50_detection", 16, 64, 96,
        formats=("pytorchvideo", "pyslowfast", "pyslowfast-wrapped-ptv", "caffe2"),
    )  # fmt: skip


def test_ava_short_layout_parity_aligned(tmp_path):
    # SLOWFAST_32x2_R50_SHORT: same network, RoIAlign aligned=True.
    _run_case(tmp_path, "slowfast_r50_ava_32x2", 16, 64, 64, formats=("pyslowfast",))


def test_slow_only_layout_parity(tmp_path):
    # Slow-only R50 4x16 AVA (aligned=True) against PyTorchVideo create_resnet_with_roi_head.
    _run_case(tmp_path, "slow_r50_ava_4x16", 16, 64, 80, formats=("pytorchvideo",), num_frames=4)


@pytest.mark.slow
def test_convert_cli_reads_ptv_detection_checkpoint(tmp_path, capsys):
    """``python -m slowfast_tf.convert`` on the SLOWFAST_8x8_R50_DETECTION.pyth name layout."""
    model = models.build_model("slowfast_r50_detection", width=8, num_frames=16)
    arch = verify.reference_arch(model)
    reference = torch_reference.build_ptv_detector(arch)
    path = parity_fixtures.write_ptv_checkpoint(reference, str(tmp_path / "ptv_detector.pyth"))
    out = str(tmp_path / "det.weights.h5")
    argv = ["--source", "pytorchvideo", path, "--preset", "slowfast_r50_detection", "--output_file", out,
            '--model_overrides={"width": 8, "num_frames": 16}']  # fmt: skip
    assert convert_main.main(argv) == 0
    assert "checkpoint classes: 80" in capsys.readouterr().out
    loaded = models.build_model("slowfast_r50_detection", width=8, num_frames=16)
    loaded.load_weights(out)
    state = checkpoints.read_checkpoint(path, "pytorchvideo")[0]
    exported = keras_loader.keras_to_pyslowfast_state(loaded)
    assert exported.keys() == {k for k in state if not k.endswith("num_batches_tracked")}
    for name, value in exported.items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


@pytest.mark.slow
def test_r101_nonlocal_checkpoint_names_round_trip(tmp_path):
    """The c2 AVA R101 50_50 + non-local layout: every tensor (``nonlocal_conv4_{6,13,20}``,
    ``pred_w``) maps onto the Keras detector, strictly, from a Caffe2 blob pickle (CLI) and
    from a legacy (pre-zip) ``torch.save`` pickle with PySlowFast names -- the released
    ``SLOWFAST_32x2_R101_50_50.pkl`` is loaded with ``CHECKPOINT_TYPE: pytorch`` by its config."""
    import torch

    model = models.build_model("slowfast_r101_50_50_ava_32x2", width=8)
    rng = np.random.default_rng(0)
    state = {
        name: rng.standard_normal(value.shape).astype(np.float32)
        for name, value in keras_loader.keras_to_pyslowfast_state(model).items()
    }
    assert any(".pathway0_nonlocal13.conv_theta" in n for n in state)

    def assert_loaded(keras_model):
        for name, value in keras_loader.keras_to_pyslowfast_state(keras_model).items():
            np.testing.assert_array_equal(value, state[name], err_msg=name)

    legacy = str(tmp_path / "SLOWFAST_32x2_R101_50_50.pkl")
    torch.save(
        {"epoch": 1, "model_state": {k: torch.from_numpy(v) for k, v in state.items()},
         "cfg": "MODEL:\n  ARCH: slowfast\n"},
        legacy,
        _use_new_zipfile_serialization=False,
    )  # fmt: skip
    report = keras_loader.convert_checkpoint(legacy, "pyslowfast", model)
    assert report.num_tensors == len(state)
    assert_loaded(model)

    path = parity_fixtures.write_caffe2_checkpoint(state, str(tmp_path / "r101_nl_c2.pkl"))
    out = str(tmp_path / "r101.weights.h5")
    argv = ["--source", "caffe2", path, "--preset", "slowfast_r101_50_50_ava_32x2", "--output_file", out,
            '--model_overrides={"width": 8}']  # fmt: skip
    assert convert_main.main(argv) == 0
    loaded = models.build_model("slowfast_r101_50_50_ava_32x2", width=8)
    loaded.load_weights(out)
    assert_loaded(loaded)
    # Strict: an extra blob is refused with exit status 2.
    blobs = parity_fixtures.caffe2_blobs_from_pyslowfast(state)
    blobs["nonlocal_conv4_7_theta_w"] = blobs["nonlocal_conv4_6_theta_w"]
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    assert convert_main.main(argv) == 2


@pytest.mark.large
def test_full_size_ptv_detection_parity(tmp_path):
    _run_case(
        tmp_path, "slowfast_r50_detection", 64, 224, 224, formats=("pytorchvideo",), num_frames=32
    )


def test_kinetics_checkpoint_initialises_detector_backbone(tmp_path, capsys):
    """The AVA recipe starts from Kinetics weights: a K400 classifier checkpoint converts into
    the detector with ``--num_classes 80`` (backbone shapes are stride-independent), the
    400-class head is dropped and the backbone tensors land unchanged."""
    tiny = dict(width=8, num_frames=16)
    classifier = models.build_model("slowfast_r50_8x8", num_classes=400, **tiny)
    rng = np.random.default_rng(0)
    state = {
        name: rng.standard_normal(value.shape).astype(np.float32)
        for name, value in keras_loader.keras_to_pyslowfast_state(classifier).items()
    }
    path = parity_fixtures.write_pyslowfast_checkpoint(state, str(tmp_path / "k400.pyth"))
    out = str(tmp_path / "ava_init.weights.h5")
    argv = ["--source", "pyslowfast", path, "--preset", "slowfast_r50_ava_32x2", "--output_file", out,
            "--num_classes", "80", '--model_overrides={"width": 8, "num_frames": 16}']  # fmt: skip
    assert convert_main.main(argv) == 0
    assert "400 classes, model has 80" in capsys.readouterr().out
    detector = models.build_model("slowfast_r50_ava_32x2", **tiny)
    detector.load_weights(out)
    exported = keras_loader.keras_to_pyslowfast_state(detector)
    assert exported.keys() == state.keys()
    for name, value in exported.items():
        if not name.startswith("head."):
            np.testing.assert_array_equal(value, state[name], err_msg=name)
    assert exported["head.projection.weight"].shape == (80, 2304 // 8)
