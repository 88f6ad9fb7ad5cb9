import csv
import json
import os

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


def _identity_eval_model():
    inputs = keras.Input((3,), name="slow")
    return keras.Model({"slow": inputs}, {"probabilities": keras.layers.Identity()(inputs)})


def test_unlabelled_videos_are_excluded_and_counted(tmp_path):
    # Video 3 is unlabelled (-1); it used to be scored as the last class (np.eye()[-1]).
    labels = np.array([-1, 1, -1, 1, -1, 1])
    ds = tf.data.Dataset.from_tensor_slices(
        ({"slow": VIEW_SCORES.astype("float32")}, labels, VIDEO_INDEX)).batch(2)
    result = evaluation.evaluate_multiview(_identity_eval_model(), ds, output_dir=str(tmp_path))
    summary = result["summary"]
    assert summary["num_unlabelled"] == 1 and summary["num_videos"] == 1
    assert summary["num_views"] == 3 and summary["top1"] == pytest.approx(100.0)
    assert [r["support"] for r in result["per_class"]] == [0, 1, 0]
    with open(tmp_path / "eval_summary.json") as f:
        assert json.load(f)["num_unlabelled"] == 1


def test_out_of_range_label_fails_at_its_batch_not_after_the_whole_set():
    seen = []

    def views():
        for i in range(60):  # 10 copies of the 2 videos; view 1 (batch 0) has label 9 of 3
            seen.append(i)
            yield ({"slow": VIEW_SCORES[i % 6].astype("float32")}, 9 if i == 1 else 1,
                   VIDEO_INDEX[i % 6] + 10 * (i // 6))

    spec = ({"slow": tf.TensorSpec((3,), tf.float32)}, tf.TensorSpec((), tf.int64),
            tf.TensorSpec((), tf.int64))
    ds = tf.data.Dataset.from_generator(views, output_signature=spec).batch(2)
    with pytest.raises(ValueError, match=r"\[-1, 3\) .*test batch 0.*Received: labels \[9\]"):
        evaluation.evaluate_multiview(_identity_eval_model(), ds)
    assert len(seen) < 60
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\)"):
        evaluation.per_class_report(np.eye(3), np.array([0, 1, -1]))


def test_reports_are_written_through_the_atomic_helper(tmp_path, monkeypatch):
    opened = []
    real = evaluation.fileio.atomic_open

    def spy(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(evaluation.fileio, "atomic_open", spy)
    (tmp_path / "eval_summary.json").write_text("old")
    paths = evaluation.write_report({"top1": 1.0}, [{"class_id": 0}], str(tmp_path))
    assert sorted(opened) == ["eval_per_class.csv", "eval_per_class.json", "eval_summary.json"]
    assert json.loads(open(paths["summary"]).read()) == {"top1": 1.0}
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
