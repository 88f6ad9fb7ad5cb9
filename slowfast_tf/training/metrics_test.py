import numpy as np
import pytest

from slowfast_tf.training import metrics


def test_topk_accuracy_hand_computed():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array([1, 1, 0, 1])
    # Row 3 is a tie between classes 0 and 1: like torch.topk the lower index wins top-1.
    assert metrics.topk_accuracy(scores, labels, 1) == pytest.approx(1 / 4)
    assert metrics.topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert metrics.topk_accuracy(scores, labels, 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k=4"):
        metrics.topk_accuracy(scores, labels, 4)


def test_average_precision_hand_computed_with_ties():
    # Ranks: 1 (P=1, R=.5), 0, 1 (P=2/3, R=1) -> AP = .5 * 1 + .5 * 2/3.
    assert metrics.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # Tied scores form one threshold (sklearn): 0.5 -> tp=1, fp=1 (+ the 0.9 false positive).
    assert metrics.average_precision([0.9, 0.5, 0.5], [0, 1, 0]) == pytest.approx(1 / 3)
    assert np.isnan(metrics.average_precision([0.3, 0.2], [0, 0]))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.6, 0.2], [0.7, 0.4, 0.1], [0.6, 0.9, 0.5]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    ap0 = metrics.average_precision(scores[:, 0], targets[:, 0])  # ranks 1,0,1,0 -> 5/6
    ap1 = metrics.average_precision(scores[:, 1], targets[:, 1])  # ranks 1,1,0,0 -> 1
    assert (ap0, ap1) == pytest.approx((5 / 6, 1.0))
    assert metrics.mean_average_precision(scores, targets) == pytest.approx((5 / 6 + 1) / 2)
    with pytest.raises(ValueError, match="targets.shape"):
        metrics.mean_average_precision(scores, targets[:, :2])


def test_build_train_metrics_names():
    assert [m.name for m in metrics.build_train_metrics(400)] == ["top1", "top5"]
    assert [m.name for m in metrics.build_train_metrics(3)] == ["top1"]
    assert [m.name for m in metrics.build_train_metrics(157, multi_label=True)] == ["map_approx"]
