"""Evaluation metrics in NumPy: top-k accuracy, average precision and Charades-style mAP.

The mAP follows PySlowFast's ``meters.get_map``: classes without any positive label are dropped,
then the mean of scikit-learn's ``average_precision_score`` per class is taken. AP here is the
step-wise (non-interpolated) area ``sum_n (R_n - R_{n-1}) * P_n`` over distinct score thresholds,
with tied scores forming one threshold, exactly as scikit-learn computes it (sklearn is not a
dependency of this project).
"""

import keras
import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores.

    Args:
        scores: float array ``[N, C]`` (probabilities or logits).
        labels: int array ``[N]``.
        k: int, 1 <= k <= C.

    Returns:
        float in [0, 1].
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(
            "Expected scores [N, C] and labels [N]. Received: "
            f"scores.shape={scores.shape}, labels.shape={labels.shape}"
        )
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"`k` must be in [1, {scores.shape[1]}]. Received: k={k}")
    if scores.shape[0] == 0:
        return float("nan")
    # A stable sort on -scores keeps the lower class index first among ties, like torch.topk.
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == labels[:, None], axis=1)))


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class (``sklearn.metrics.average_precision_score`` semantics).

    Args:
        scores: float array ``[N]``, higher = more confident.
        targets: binary array ``[N]``.

    Returns:
        float AP, or NaN when there is no positive target.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets).reshape(-1) > 0
    if scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must match. Received: {scores.shape} vs {targets.shape}"
        )
    num_pos = int(targets.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order]
    tp = np.cumsum(targets)
    fp = np.cumsum(~targets)
    # Keep the last index of each run of equal scores: one threshold per distinct score.
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / num_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Charades mAP: mean AP over the classes that have at least one positive.

    Args:
        scores: float array ``[N, C]``.
        targets: multi-hot array ``[N, C]``.

    Returns:
        float mAP (NaN if no class has a positive).
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(
            "Expected scores and targets of the same [N, C] shape. Received: "
            f"scores.shape={scores.shape}, targets.shape={targets.shape}"
        )
    aps = [
        average_precision(scores[:, c], targets[:, c])
        for c in range(scores.shape[1])
        if np.any(targets[:, c] > 0)
    ]
    return float(np.mean(aps)) if aps else float("nan")


def build_train_metrics(num_classes: int, multi_label: bool = False) -> list:
    """Keras metrics logged during training (on logits).

    Args:
        num_classes: int, number of classes.
        multi_label: bool, multi-hot labels.

    Returns:
        list of ``keras.metrics.Metric``: top-1/top-5 accuracy, or a PR-AUC approximation of mAP
        (200 thresholds, averaged over labels) for multi-label data.
    """
    if multi_label:
        return [
            keras.metrics.AUC(
                curve="PR",
                multi_label=True,
                num_labels=num_classes,
                from_logits=True,
                name="map_approx",
            )
        ]
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="top1")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    return metrics
