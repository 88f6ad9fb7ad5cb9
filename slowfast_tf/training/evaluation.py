"""Multi-view testing (PySlowFast ``TestMeter``) and per-class reports.

At test time every video is seen as ``num_clips x num_crops`` views (10 x 3 for Kinetics). Each
view goes through the fully-convolutional eval head, which already returns the mean of the
per-position softmaxes (``build_eval_model()["probabilities"]``). The views of one video are then
combined:

- ``"mean"`` (PySlowFast ``ENSEMBLE_METHOD: sum``; top-k of the sum equals top-k of the mean),
- ``"max"`` (Charades, multi-label: element-wise max of the per-view sigmoids).

Top-1/top-5 (single-label) or mAP (multi-label) are computed on the per-video scores. Unlabelled
videos (label -1, a record without ``clip/label/index``) are excluded from the metrics and counted
in ``num_unlabelled``; any other label outside ``[0, num_classes)`` is an error, raised at the first
batch that holds it.
"""

import csv
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from slowfast_tf.training import metrics as metrics_lib
from slowfast_tf.utils import fileio

ENSEMBLE_METHODS = ("mean", "sum", "max")


def aggregate_views(
    view_scores: np.ndarray,
    video_index: np.ndarray,
    view_labels: np.ndarray | None = None,
    method: str = "mean",
):
    """Combines per-view scores into per-video scores.

    Args:
        view_scores: float ``[N, C]``, one row per view (softmax or sigmoid outputs).
        video_index: int ``[N]``, the video each view belongs to (any ids, any order).
        view_labels: optional ``[N]`` int or ``[N, C]`` multi-hot labels; every view of a video
            must carry the same label.
        method: ``"mean"``, ``"sum"`` or ``"max"``.

    Returns:
        ``(video_ids [V], video_scores [V, C], video_labels or None, views_per_video [V])`` with
        videos sorted by id.
    """
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"`method` must be one of {ENSEMBLE_METHODS}. Received: method={method!r}")
    view_scores = np.asarray(view_scores, dtype=np.float64)
    video_index = np.asarray(video_index).reshape(-1)
    if view_scores.ndim != 2 or video_index.shape[0] != view_scores.shape[0]:
        raise ValueError(
            "Expected view_scores [N, C] and video_index [N]. Received: "
            f"view_scores.shape={view_scores.shape}, video_index.shape={video_index.shape}"
        )
    video_ids, first, inverse, counts = np.unique(
        video_index, return_index=True, return_inverse=True, return_counts=True
    )
    num_videos, num_classes = len(video_ids), view_scores.shape[1]
    if method == "max":
        video_scores = np.full((num_videos, num_classes), -np.inf)
        np.maximum.at(video_scores, inverse, view_scores)
    else:
        video_scores = np.zeros((num_videos, num_classes))
        np.add.at(video_scores, inverse, view_scores)
        if method == "mean":
            video_scores /= counts[:, None]

    video_labels = None
    if view_labels is not None:
        view_labels = np.asarray(view_labels)
        if view_labels.shape[0] != view_scores.shape[0]:
            raise ValueError(
                "view_labels needs one row per view. Received: "
                f"view_labels.shape={view_labels.shape}, {view_scores.shape[0]} views"
            )
        video_labels = view_labels[first]
        if not np.array_equal(video_labels[inverse], view_labels):
            raise ValueError("All views of a video must have the same label.")
    return video_ids, video_scores, video_labels, counts


def per_class_report(
    video_scores: np.ndarray,
    video_labels: np.ndarray,
    class_names: list | None = None,
    multi_label: bool = False,
    threshold: float = 0.5,
) -> list:
    """Per-class precision / recall / F1 / accuracy (and AP for multi-label).

    Single-label: the prediction is the arg-max class. ``accuracy`` is the per-class top-1
    accuracy (correct videos of the class / videos of the class, i.e. the recall), the number
    video papers plot per class; ``top5`` is the per-class top-5 accuracy.
    Multi-label: a class is predicted when its score >= ``threshold``; ``accuracy`` is the
    one-vs-rest accuracy and ``ap`` the class's average precision.

    Args:
        video_scores: float ``[V, C]``.
        video_labels: int ``[V]`` or multi-hot ``[V, C]``.
        class_names: optional list of C names.
        multi_label: bool.
        threshold: float, decision threshold for multi-label precision/recall.

    Returns:
        list of C dicts (one per class) with plain Python values.
    """
    video_scores = np.asarray(video_scores)
    num_videos, num_classes = video_scores.shape
    if class_names is None:
        class_names = [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"Expected {num_classes} class names. Received: {len(class_names)} names"
        )
    if multi_label:
        targets = np.asarray(video_labels) > 0
        predicted = video_scores >= threshold
    else:
        labels = np.asarray(video_labels).astype(np.int64)
        check_label_range(labels, num_classes)
        targets = np.eye(num_classes, dtype=bool)[labels]
        predicted = np.eye(num_classes, dtype=bool)[np.argmax(video_scores, axis=1)]
        top5 = np.argsort(-video_scores, axis=1, kind="stable")[:, : min(5, num_classes)]
        in_top5 = np.zeros_like(targets)
        np.put_along_axis(in_top5, top5, True, axis=1)

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    rows = []
    for c in range(num_classes):
        tp = int(np.sum(predicted[:, c] & targets[:, c]))
        fp = int(np.sum(predicted[:, c] & ~targets[:, c]))
        fn = int(np.sum(~predicted[:, c] & targets[:, c]))
        support = int(np.sum(targets[:, c]))
        precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
        row = {
            "class_id": c,
            "class_name": class_names[c],
            "support": support,
            "predicted": tp + fp,
            "precision": precision,
            "recall": recall,
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
        }
        if multi_label:
            row["accuracy"] = ratio(int(np.sum(predicted[:, c] == targets[:, c])), num_videos)
            row["ap"] = metrics_lib.average_precision(video_scores[:, c], targets[:, c])
        else:
            row["accuracy"] = recall
            row["top5"] = ratio(int(np.sum(in_top5[:, c] & targets[:, c])), support)
        rows.append(row)
    return rows


def check_label_range(labels, num_classes: int, allow_unlabelled: bool = False, where: str = ""):
    """Raises ``ValueError`` unless every single-label class index is in ``[0, num_classes)``.

    ``allow_unlabelled`` also accepts -1 (an unlabelled video, excluded from the metrics).
    """
    labels = np.asarray(labels).reshape(-1)
    low = -1 if allow_unlabelled else 0
    bad = (labels < low) | (labels >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"Labels must be in [{low}, {num_classes}) for a {num_classes}-class model{where}; "
            f"check --num_classes and the records' label map. Received: labels "
            f"{sorted(set(labels[bad].tolist()))[:10]} ({int(bad.sum())} of {labels.size})"
        )


def summarize(video_scores, video_labels, multi_label: bool = False) -> dict:
    """Headline numbers: top-1/top-5 accuracy (percent) or mAP (percent)."""
    if multi_label:
        return {"mAP": 100.0 * metrics_lib.mean_average_precision(video_scores, video_labels)}
    num_classes = np.asarray(video_scores).shape[1]
    summary = {"top1": 100.0 * metrics_lib.topk_accuracy(video_scores, video_labels, 1)}
    summary["top5"] = 100.0 * metrics_lib.topk_accuracy(
        video_scores, video_labels, min(5, num_classes)
    )
    return summary


def write_report(summary: dict, rows: list, output_dir: str, prefix: str = "eval") -> dict:
    """Writes ``{prefix}_summary.json``, ``{prefix}_per_class.json`` and ``{prefix}_per_class.csv``.

    Returns:
        dict of the written paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "summary": os.path.join(output_dir, f"{prefix}_summary.json"),
        "per_class_json": os.path.join(output_dir, f"{prefix}_per_class.json"),
        "per_class_csv": os.path.join(output_dir, f"{prefix}_per_class.csv"),
    }
    # Atomic: a kill mid-write leaves the previous complete report, never a truncated one.
    with fileio.atomic_open(paths["summary"], "w") as f:
        json.dump(summary, f, indent=2)
    with fileio.atomic_open(paths["per_class_json"], "w") as f:
        json.dump(rows, f, indent=2)
    with fileio.atomic_open(paths["per_class_csv"], "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)
    return paths


def _split_test_element(element):
    """``(inputs, labels, video_index)``, or ``(inputs, labels)`` with ``inputs["video_index"]``."""
    if isinstance(element, dict):
        inputs = dict(element)
        labels = inputs.pop("label", inputs.pop("labels", None))
        video_index = inputs.pop("video_index")
        return inputs, labels, video_index
    if len(element) == 3:
        return element
    inputs, labels = element
    if not isinstance(inputs, dict) or "video_index" not in inputs:
        raise ValueError(
            "Test elements must be (inputs, labels, video_index) or carry inputs['video_index']. "
            f"Received: {type(inputs).__name__} inputs with keys "
            f"{list(inputs) if isinstance(inputs, dict) else None}"
        )
    inputs = dict(inputs)
    video_index = inputs.pop("video_index")
    return inputs, labels, video_index


def evaluate_multiview(
    eval_model,
    dataset: tf.data.Dataset,
    multi_label: bool = False,
    method: str | None = None,
    class_names: list | None = None,
    output_dir: str | None = None,
    num_batches: int | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Runs multi-view testing over ``dataset`` and returns (and optionally writes) the report.

    Args:
        eval_model: model returning ``{"probabilities": [B, C], ...}`` (``build_eval_model()``) or
            a tensor of probabilities.
        dataset: test-mode dataset of view batches (see ``_split_test_element``).
        multi_label: bool; switches the default ensemble to ``"max"`` and the metric to mAP.
        method: ``"mean"`` / ``"sum"`` / ``"max"``; default ``"max"`` if multi-label else ``"mean"``.
        class_names: optional list of class names for the per-class report.
        output_dir: if given, the JSON/CSV reports are written there.
        num_batches: optional cap on the number of batches (quick checks).
        strategy: optional strategy, whose scope the forward pass runs under.

    Returns:
        dict with ``summary`` (top1/top5 or mAP, num_videos and num_views scored, num_unlabelled
        videos left out), ``per_class`` rows and ``paths`` of written files.
    """
    method = method or ("max" if multi_label else "mean")
    strategy = strategy or tf.distribute.get_strategy()

    @tf.function
    def predict(inputs):
        outputs = eval_model(inputs, training=False)
        if isinstance(outputs, dict):
            outputs = outputs["probabilities"]
        return tf.cast(outputs, tf.float32)

    scores, labels, indices = [], [], []
    iterator = dataset.take(num_batches) if num_batches else dataset
    with strategy.scope():
        for batch, element in enumerate(
            tqdm(iterator, desc="multi-view eval", unit="batch", leave=False)
        ):
            inputs, batch_labels, video_index = _split_test_element(element)
            batch_scores = predict(inputs).numpy()
            batch_labels = np.asarray(batch_labels)
            if not multi_label:  # Fail at the first bad batch, not after the whole test set.
                check_label_range(batch_labels, batch_scores.shape[1], allow_unlabelled=True,
                                  where=f" (test batch {batch})")
            scores.append(batch_scores)
            labels.append(batch_labels)
            indices.append(np.asarray(video_index).reshape(-1))
    if not scores:
        raise ValueError("The test dataset yielded no batch.")
    view_scores = np.concatenate(scores)
    _, video_scores, video_labels, counts = aggregate_views(
        view_scores, np.concatenate(indices), np.concatenate(labels), method=method
    )
    num_unlabelled = 0
    if not multi_label:
        labelled = video_labels >= 0
        num_unlabelled = int(np.sum(~labelled))
        if num_unlabelled:
            logging.warning("Multi-view evaluation: %d of %d videos are unlabelled (label -1) and "
                            "are left out of the metrics.", num_unlabelled, len(video_labels))
        if not np.any(labelled):
            raise ValueError(f"No labelled test video to score. Received: {num_unlabelled} "
                             "videos, all unlabelled (label -1)")
        video_scores, video_labels, counts = (
            video_scores[labelled], video_labels[labelled], counts[labelled])
    summary = summarize(video_scores, video_labels, multi_label)
    summary.update(
        num_videos=int(len(counts)),
        num_views=int(np.sum(counts)),
        views_per_video=float(np.mean(counts)),
        ensemble=method,
        num_unlabelled=num_unlabelled,
    )
    rows = per_class_report(video_scores, video_labels, class_names, multi_label)
    paths = write_report(summary, rows, output_dir) if output_dir else {}
    return {"summary": summary, "per_class": rows, "paths": paths}
