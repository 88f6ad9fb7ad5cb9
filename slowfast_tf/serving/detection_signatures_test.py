"""Detector SavedModel: TF1 session loader (as TF Serving), same numbers as eager, box errors."""

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.serving import detection_signatures, tfserving
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import DETECTOR_LABELS as LABELS
from slowfast_tf.testing.serving_models import detector_data_config

CONFIG = detector_data_config()


@pytest.fixture(scope="module")
def exported(detector_export, detector_runner):
    """`(model, SessionRunner)` of the shared tiny detector export (conftest.py)."""
    return detector_export[0], detector_runner


def test_session_loader_matches_eager_and_top_k(exported):
    model, runner = exported
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 8, 48, 64, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.4, 0.0, 1.0, 0.6]], np.float32)
    out = runner.run("serving_default", {"frames": frames, "boxes": boxes})
    assert out["probabilities"].shape == (2, 5) and out["top_k_ids"].shape == (2, 3)
    inputs = detection_signatures.preprocess(frames[0], boxes, CONFIG)
    assert inputs["fast"].shape == (1, 8, 32, 42, 3) and inputs["box_mask"].numpy().tolist() == [
        [1, 1, 0, 0]]
    # Boxes stay normalised to the resized frame (short side 48 -> 32): about the same fractions
    # (pixel clipping to W - 1 and the long side's scale ratio move them by < 3%).
    np.testing.assert_allclose(inputs["boxes"].numpy()[0, :2], boxes, atol=0.03)
    np.testing.assert_array_equal(inputs["boxes"].numpy()[0, 2:], 0)
    eager = model.build_eval_model()(inputs, training=False)["probabilities"].numpy()[0, :2]
    np.testing.assert_allclose(out["probabilities"], eager, atol=1e-5)
    np.testing.assert_array_equal(out["top_k_ids"], np.argsort(-eager, axis=1)[:, :3])
    assert out["top_k_labels"][0, 0].decode() == LABELS[out["top_k_ids"][0, 0]]


@pytest.mark.parametrize("boxes,message", [
    ([[0.1, 0.2, 1.3, 0.9]], "every coordinate in \\[0, 1\\]"),
    ([[-0.1, 0.2, 0.3, 0.9]], "every coordinate in \\[0, 1\\]"),
    ([[0.5, 0.2, 0.3, 0.9]], "x2 > x1 and y2 > y1"),
    ([[0.1, 0.2, 0.3, 0.4]] * 5, "more than max_boxes=4"),
    (np.zeros((0, 4)), "at least one"),
])
def test_bad_boxes_give_clear_errors(exported, boxes, message):
    _, runner = exported
    frames = np.zeros((1, 8, 48, 64, 3), np.uint8)
    with pytest.raises(local_server.PredictError, match=message):
        runner.run("serving_default", {"frames": frames, "boxes": np.asarray(boxes, np.float32)})


def test_export_py_exports_a_detector(exported, tmp_path):
    """``export.py --model_file=model.keras`` of a detector -> versioned SavedModel + models.config."""
    import os
    import sys

    from absl import flags

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import export

    model, _ = exported
    model_file = str(tmp_path / "model.keras")
    model.save(model_file)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    values = flags.FlagValues()
    export.define_flags(values)
    values(["export.py", f"--model_file={model_file}", f"--output_dir={tmp_path / 'repo'}",
            "--model_name=ava", f"--labels_file={labels}", "--data_preset=ava_synthetic", "--top_k=2"])
    export.main([], flag_values=values)
    export_dir = tmp_path / "repo" / "ava" / "1"
    assert (tmp_path / "repo" / "models.config").exists()
    runner = local_server.SessionRunner(str(export_dir))
    try:
        frames = np.zeros((1, 8, 48, 64, 3), np.uint8)
        out = runner.run("serving_default", {"frames": frames,
                                             "boxes": np.array([[0.1, 0.1, 0.6, 0.9]], np.float32)})
    finally:
        runner.close()
    assert out["probabilities"].shape == (1, 5) and out["top_k_labels"].shape == (1, 2)
    (warmup,) = tfserving.read_warmup_requests(str(export_dir))  # --warmup is on by default
    assert warmup.model_spec.name == "ava" and set(warmup.inputs) == {"frames", "boxes"}


def test_warmup_requests_parse_and_run_through_the_session_loader(exported, detector_export):
    """What TF Serving replays at load: frames + boxes of the client's shape, valid for the graph."""
    model, runner = exported
    export_dir = detector_export[1]
    requests = tfserving.read_warmup_requests(export_dir)
    assert len(requests) == 1
    (request,) = requests
    assert request.model_spec.name == "tiny_detector"
    assert request.model_spec.signature_name == "serving_default"
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    # The model's T, short side test_size (32) on a 4:3 frame, two normalised boxes.
    assert inputs["frames"].shape == (1, 8, 32, 42, 3) and inputs["frames"].dtype == np.uint8
    assert inputs["boxes"].shape == (2, 4) and inputs["boxes"].dtype == np.float32
    assert detection_signatures.warmup_requests("tiny_detector", CONFIG)[0] == request  # reproducible
    out = runner.run(request.model_spec.signature_name, inputs)
    eager = model.build_eval_model()(
        detection_signatures.preprocess(inputs["frames"][0], inputs["boxes"], CONFIG),
        training=False)["probabilities"].numpy()[0, :2]
    np.testing.assert_allclose(out["probabilities"], eager, atol=1e-5)
