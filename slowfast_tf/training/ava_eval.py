"""AVA frame-mAP, computed as the official evaluators do (PASCAL VOC AP at IoU 0.5 per class).

Two protocols, selected by ``protocol``:

``"activitynet"`` (default; ActivityNet ``Evaluation/get_ava_performance.py``)
    Detections are read per keyframe keeping only the **top 50 rows by score** across classes
    (a min-heap, exactly as ``read_csv(capacity=50)``), then sorted by descending score.
``"pyslowfast"`` (``slowfast/utils/ava_eval_helper.py``)
    No cap and no sort: detections are matched in input order.

Everything else is shared by both and follows ``ava_evaluation/`` (TF object-detection code):

1. keys are ``(video_id, int(sec))``; rows whose action id is not in the label map are dropped;
   keys listed in the exclusions are dropped from ground truth *and* detections;
2. detections with ``x2 <= x1`` or ``y2 <= y1`` are dropped;
3. per key and class, each detection in turn takes the ground-truth box of highest IoU (float64,
   ``inter / (a1 + a2 - inter)``, first box on ties); ``IoU >= 0.5`` on a not yet matched box is a
   TP, anything else an FP (no fall back to the next-best box), so a duplicate detection is one TP
   and one FP; detections on keys without ground truth of their class are FPs; no difficult boxes;
4. per class, all detections are ordered by ``np.argsort(scores)[::-1]`` (numpy's default sort,
   so, as in the official code, the order inside a TP/FP score tie is numpy's), precision =
   cumTP / k, recall = cumTP / num_gt, VOC all-points AP (precision made monotone, summed where
   recall changes); a class with ground truth but no detections has AP 0;
5. a class without ground truth (after exclusions) has AP NaN and its detections are ignored;
   mAP is the ``nanmean`` over the label-map classes.

API::

    metrics = evaluate_files("gt.csv", "detections.csv", "labelmap.pbtxt", "exclusions.csv")
    metrics["PascalBoxes_Precision/mAP@0.5IOU"]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import numpy as np

from slowfast_tf.data.ava import ava_files
from slowfast_tf.data.ava.ava_files import AvaRow

PROTOCOLS = ("activitynet", "pyslowfast")
ACTIVITYNET_CAPACITY = 50
MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
PER_CLASS_PREFIX = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"


def _group(rows: Iterable[AvaRow], class_ids, excluded, capacity: int = 0):
    """rows -> {key: (boxes [N,4] y1x1y2x2 float64, labels [N], scores [N])}, first-appearance key
    order. With `capacity`, keep the top `capacity` rows per key (ActivityNet's heap) sorted by
    descending score."""
    entries: dict[tuple[str, int], list] = {}
    for r in rows:
        if r.action_id not in class_ids or r.key in excluded:
            continue
        x1, y1, x2, y2 = r.box
        item = (r.score, r.action_id, y1, x1, y2, x2)
        heap = entries.setdefault(r.key, [])
        if capacity < 1:
            heap.append(item)
        elif len(heap) < capacity:
            heapq.heappush(heap, item)
        elif r.score > heap[0][0]:
            heapq.heapreplace(heap, item)
    grouped = {}
    for key, items in entries.items():
        if capacity >= 1:
            items = sorted(items, key=lambda t: -t[0])
        boxes = np.array([t[2:] for t in items], dtype=np.float64).reshape(-1, 4)
        labels = np.array([t[1] for t in items], dtype=np.int64)
        scores = np.array([t[0] for t in items], dtype=np.float64)
        grouped[key] = (boxes, labels, scores)
    return grouped


def iou_matrix(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N,4]`` and ``[M,4]`` boxes (any corner order convention, same for both),
    float64, no +1, as the official ``np_box_ops.iou``."""
    b1 = np.asarray(boxes1, np.float64)
    b2 = np.asarray(boxes2, np.float64)
    h = np.maximum(0.0, np.minimum(b1[:, None, 2], b2[None, :, 2])
                   - np.maximum(b1[:, None, 0], b2[None, :, 0]))
    w = np.maximum(0.0, np.minimum(b1[:, None, 3], b2[None, :, 3])
                   - np.maximum(b1[:, None, 1], b2[None, :, 1]))
    inter = h * w
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return inter / (area1[:, None] + area2[None, :] - inter)


def match_detections(det_boxes: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5):
    """TP flags of one key and class's detections, in their given order (see module doc, step 3)."""
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = iou_matrix(det_boxes, gt_boxes)
    best = np.argmax(iou, axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i, j in enumerate(best):
        if iou[i, j] >= iou_threshold and not taken[j]:
            tp[i] = True
            taken[j] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """VOC all-points AP of one class (NaN without ground truth, 0 without detections)."""
    if num_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(scores)[::-1]
    tp_sorted = tp[order].astype(np.float64)
    cum_tp = np.cumsum(tp_sorted)
    cum_fp = np.cumsum(1.0 - tp_sorted)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changed = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[changed] - recall[changed - 1]) * precision[changed]))


def evaluate(
    groundtruth: Iterable[AvaRow],
    detections: Iterable[AvaRow],
    label_map: dict[int, str],
    excluded_keys: Iterable[tuple[str, int]] = (),
    protocol: str = "activitynet",
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Frame-mAP of `detections` against `groundtruth` (rows as read by ``ava_files``).

    Args:
        groundtruth: AvaRow iterable (scores ignored).
        detections: AvaRow iterable with scores.
        label_map: ``{id: name}`` of the evaluated classes (e.g. the 60-class pbtxt).
        excluded_keys: ``(video_id, sec)`` keys dropped from both sides.
        protocol: ``"activitynet"`` (top 50 per key, sorted) or ``"pyslowfast"`` (input order).
        iou_threshold: float.

    Returns:
        dict: ``MAP_KEY`` -> mAP, ``PER_CLASS_PREFIX + name`` -> AP (NaN without ground truth).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}. Received: {protocol!r}")
    class_ids = set(label_map)
    excluded = {(v, int(s)) for v, s in excluded_keys}
    gt = _group(groundtruth, class_ids, excluded)
    capacity = ACTIVITYNET_CAPACITY if protocol == "activitynet" else 0
    det = _group(detections, class_ids, excluded, capacity)

    num_gt = {c: 0 for c in class_ids}
    for _, labels, _ in gt.values():
        for c in labels:
            num_gt[int(c)] += 1
    scores: dict[int, list] = {c: [] for c in class_ids}
    tps: dict[int, list] = {c: [] for c in class_ids}
    empty = np.zeros((0, 4))
    for key, (boxes, labels, key_scores) in det.items():
        valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        boxes, labels, key_scores = boxes[valid], labels[valid], key_scores[valid]
        gt_boxes, gt_labels, _ = gt.get(key, (empty, np.zeros(0, np.int64), None))
        for c in np.unique(labels):
            picked = labels == c
            tp = match_detections(boxes[picked], gt_boxes[gt_labels == c], iou_threshold)
            scores[int(c)].append(key_scores[picked])
            tps[int(c)].append(tp)
    metrics = {}
    aps = []
    for c, name in label_map.items():
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        t = np.concatenate(tps[c]) if tps[c] else np.zeros(0, bool)
        ap = average_precision(s, t, num_gt[c])
        metrics[PER_CLASS_PREFIX + name] = ap
        aps.append(ap)
    valid_aps = [a for a in aps if not np.isnan(a)]
    metrics[MAP_KEY] = float(np.mean(valid_aps)) if valid_aps else float("nan")
    return {MAP_KEY: metrics.pop(MAP_KEY), **metrics}


def evaluate_files(
    groundtruth_csv: str,
    detections_csv: str,
    label_map_pbtxt: str,
    exclusions_csv: str | None = None,
    protocol: str = "activitynet",
) -> dict[str, float]:
    """`evaluate` on the official files (detections written by ``ava_files.write_detections``)."""
    excluded = ava_files.read_exclusions(exclusions_csv) if exclusions_csv else set()
    return evaluate(
        ava_files.read_annotations(groundtruth_csv),
        ava_files.read_detections(detections_csv),
        ava_files.read_label_map(label_map_pbtxt),
        excluded,
        protocol,
    )


def main(argv=None) -> dict[str, float]:
    """``python -m slowfast_tf.training.ava_eval --groundtruth gt.csv --detections det.csv ...``"""
    import json
    import sys

    from absl import flags

    from slowfast_tf.utils import cli_flags

    def define_flags(fv):
        f = {"flag_values": fv}
        flags.DEFINE_string("groundtruth", None, "Annotation CSV.", **f)
        flags.DEFINE_string("detections", None, "Detections CSV (8 columns).", **f)
        flags.DEFINE_string("label_map", None, "Label map pbtxt (evaluated classes).", **f)
        flags.DEFINE_string("exclusions", None, "Exclusions CSV.", **f)
        flags.DEFINE_enum("protocol", "activitynet", list(PROTOCOLS), "Evaluation protocol.", **f)
        flags.mark_flags_as_required(["groundtruth", "detections", "label_map"], flag_values=fv)

    try:
        args, _ = cli_flags.parse(
            argv, define_flags, "python -m slowfast_tf.training.ava_eval",
            {"--labelmap": "--label_map"}, "AVA frame-mAP@0.5 (official evaluator semantics).",
        )
        metrics = evaluate_files(args.groundtruth, args.detections, args.label_map,
                                 args.exclusions, args.protocol)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps({k: (None if np.isnan(v) else round(v, 6)) for k, v in metrics.items()}))
    return metrics


if __name__ == "__main__":
    main()
