import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.training import evaluation

# Two videos (ids 7 and 3), 3 views each, interleaved, 3 classes.
VIEW_SCORES = np.array([
    [0.6, 0.3, 0.1],  # video 7
    [0.2, 0.7, 0.1],  # video 3
    [0.1, 0.8, 0.1],  # video 7
    [0.3, 0.3, 0.4],  # video 3
    [0.5, 0.4, 0.1],  # video 7
    [0.2, 0.2, 0.6],  # video 3
])
VIDEO_INDEX = np.array([7, 3, 7, 3, 7, 3])


def test_mean_and_max_aggregation_by_hand():
    ids, scores, labels, counts = evaluation.aggregate_views(
        VIEW_SCORES, VIDEO_INDEX, view_labels=np.array([1, 2, 1, 2, 1, 2]), method="mean"
    )
    np.testing.assert_array_equal(ids, [3, 7])
    np.testing.assert_array_equal(counts, [3, 3])
    np.testing.assert_array_equal(labels, [2, 1])
    # Video 3: (0.2+0.3+0.2)/3, (0.7+0.3+0.2)/3, (0.1+0.4+0.6)/3.
    np.testing.assert_allclose(scores[0], [0.7 / 3, 1.2 / 3, 1.1 / 3])
    np.testing.assert_allclose(scores[1], [1.2 / 3, 1.5 / 3, 0.3 / 3])
    _, summed, _, _ = evaluation.aggregate_views(VIEW_SCORES, VIDEO_INDEX, method="sum")
    np.testing.assert_allclose(summed, scores * 3)
    _, maxed, _, _ = evaluation.aggregate_views(VIEW_SCORES, VIDEO_INDEX, method="max")
    np.testing.assert_allclose(maxed, [[0.3, 0.7, 0.6], [0.6, 0.8, 0.1]])


def test_aggregation_rejects_bad_input():
    with pytest.raises(ValueError, match="method='median'"):
        evaluation.aggregate_views(VIEW_SCORES, VIDEO_INDEX, method="median")
    with pytest.raises(ValueError, match="same label"):
        evaluation.aggregate_views(VIEW_SCORES, VIDEO_INDEX, np.array([1, 2, 0, 2, 1, 2]))
    with pytest.raises(ValueError, match="video_index.shape"):
        evaluation.aggregate_views(VIEW_SCORES, VIDEO_INDEX[:4])


def test_per_class_report_single_label_by_hand():
    scores = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.3, 0.2, 0.5]])
    labels = np.array([0, 1, 1, 2])
    rows = evaluation.per_class_report(scores, labels, ["a", "b", "c"])
    # Predictions: 0, 0, 1, 2.
    assert rows[0]["precision"] == pytest.approx(0.5) and rows[0]["recall"] == pytest.approx(1.0)
    assert rows[1]["precision"] == pytest.approx(1.0) and rows[1]["accuracy"] == pytest.approx(0.5)
    assert rows[2]["f1"] == pytest.approx(1.0) and rows[1]["support"] == 2
    assert [r["class_name"] for r in rows] == ["a", "b", "c"]
    summary = evaluation.summarize(scores, labels)
    assert summary["top1"] == pytest.approx(75.0) and summary["top5"] == pytest.approx(100.0)


def test_evaluate_multiview_end_to_end_writes_reports(tmp_path):
    """A stand-in eval model that returns the stored per-view scores; 2 views per batch."""
    inputs = keras.Input((3,), name="slow")
    outputs = keras.layers.Identity()(inputs)
    eval_model = keras.Model({"slow": inputs}, {"probabilities": outputs})
    labels = np.array([1, 2, 1, 2, 1, 2])
    ds = tf.data.Dataset.from_tensor_slices(
        ({"slow": VIEW_SCORES.astype("float32")}, labels, VIDEO_INDEX)
    ).batch(2)
    result = evaluation.evaluate_multiview(eval_model, ds, class_names=["x", "y", "z"],
                                           output_dir=str(tmp_path))
    # Mean scores: video 3 -> class 1 (label 2, wrong); video 7 -> class 1 (label 1, right).
    assert result["summary"]["top1"] == pytest.approx(50.0)
    assert result["summary"]["num_videos"] == 2 and result["summary"]["num_views"] == 6
    with open(tmp_path / "eval_summary.json") as f:
        assert json.load(f)["top1"] == pytest.approx(50.0)
    with open(tmp_path / "eval_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class_name"] for r in rows] == ["x", "y", "z"]
    assert float(rows[1]["precision"]) == pytest.approx(0.5)

    # Multi-label: max ensemble and mAP; video_index carried inside the inputs dict.
    multi_hot = np.eye(3)[labels]
    ds = tf.data.Dataset.from_tensor_slices(
        ({"slow": VIEW_SCORES.astype("float32"), "video_index": VIDEO_INDEX}, multi_hot)
    ).batch(3)
    result = evaluation.evaluate_multiview(eval_model, ds, multi_label=True)
    assert result["summary"]["ensemble"] == "max"
    # Max scores [[.3,.7,.6],[.6,.8,.1]], targets [[0,0,1],[0,1,0]] -> AP 1 and 1.
    assert result["summary"]["mAP"] == pytest.approx(100.0)
