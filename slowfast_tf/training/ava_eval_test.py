"""Hand-worked cases for the AVA frame-mAP (values derived on paper in the comments)."""

import math

import numpy as np
import pytest

from slowfast_tf.data.ava import ava_files
from slowfast_tf.data.ava.ava_files import AvaRow
from slowfast_tf.training import ava_eval

LABELS = {1: "a", 2: "b", 3: "c"}
A = (0.0, 0.0, 0.4, 0.4)
B = (0.5, 0.5, 0.9, 0.9)
C = (0.0, 0.5, 0.4, 0.9)


def gt(box, action, video="v", sec=902):
    return AvaRow(video, sec, box, action)


def det(box, action, score, video="v", sec=902):
    return AvaRow(video, sec, box, action, score=score)


def ap(metrics, name):
    return metrics[ava_eval.PER_CLASS_PREFIX + name]


def test_perfect_detection_and_missing_class_is_nan():
    m = ava_eval.evaluate([gt(A, 1)], [det(A, 1, 0.9), det(B, 2, 0.8)], LABELS)
    assert ap(m, "a") == 1.0
    # classes b and c have no ground truth: NaN, and b's detection is ignored (not an FP anywhere)
    assert math.isnan(ap(m, "b")) and math.isnan(ap(m, "c"))
    assert m[ava_eval.MAP_KEY] == 1.0


def test_duplicates_and_protocol_order():
    g = [gt(A, 1), gt(B, 1)]
    # ActivityNet sorts per key: A@.9 TP, A@.8 duplicate FP, B@.7 TP.
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> monotone 1, 2/3, 2/3 -> AP = .5 + .5 * 2/3.
    d = [det(A, 1, 0.8), det(A, 1, 0.9), det(B, 1, 0.7)]
    m = ava_eval.evaluate(g, d, LABELS, protocol="activitynet")
    assert ap(m, "a") == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    # PySlowFast matches in input order: A@.8 TP, A@.9 FP. Ranked: FP, TP, TP -> precision
    # 0, 1/2, 2/3 at recall 0, 1/2, 1 -> monotone 2/3 everywhere -> AP = 2/3.
    m = ava_eval.evaluate(g, d, LABELS, protocol="pyslowfast")
    assert ap(m, "a") == pytest.approx(2 / 3, abs=1e-12)


def test_duplicate_groundtruth_row_is_an_unmatchable_gt():
    m = ava_eval.evaluate([gt(A, 1), gt(A, 1)], [det(A, 1, 0.9), det(A, 1, 0.5)], LABELS)
    # two identical GT boxes: argmax picks the first for both detections -> TP, FP; recall 1/2.
    assert ap(m, "a") == pytest.approx(0.5)


def test_no_fallback_to_second_best_groundtruth():
    wide = (0.0, 0.0, 0.4, 0.6)  # IoU(wide, A) = 2/3, IoU(wide, C-ish) below
    g = [gt(A, 1), gt(wide, 1)]
    # first det = A exactly -> TP on A; second det = A again: best GT is A (taken) although
    # IoU(A, wide) = 2/3 >= .5 -> FP (the official code does not try the next-best box).
    m = ava_eval.evaluate(g, [det(A, 1, 0.9), det(A, 1, 0.8)], LABELS)
    assert ap(m, "a") == pytest.approx(0.5)


def test_groundtruth_without_detections_is_zero_and_counts_in_map():
    m = ava_eval.evaluate([gt(A, 1), gt(B, 2)], [det(A, 1, 0.9)], LABELS)
    assert ap(m, "a") == 1.0 and ap(m, "b") == 0.0
    assert m[ava_eval.MAP_KEY] == 0.5


def test_excluded_keyframes_are_dropped_from_both_sides():
    g = [gt(A, 1), gt(A, 1, sec=903)]
    d = [det(A, 1, 0.9), det(B, 1, 0.95, sec=903), det(B, 1, 0.99, sec=904)]
    # Without exclusions: 904 is a key without GT (FP @.99), 903 an FP @.95, 902 TP @.9.
    # ranked FP, FP, TP: precision 1/3 at recall 1/2 -> AP = 1/6.
    assert ap(ava_eval.evaluate(g, d, LABELS), "a") == pytest.approx(1 / 6)
    # Excluding 903 removes one GT and one FP: ranked FP, TP; recall 1 at precision 1/2.
    m = ava_eval.evaluate(g, d, LABELS, excluded_keys=[("v", 903)])
    assert ap(m, "a") == pytest.approx(0.5)


def test_iou_exactly_half_follows_float64():
    g = [gt((0.0, 0.0, 1.0, 1.0), 1)]
    # inter .5, union 1 -> IoU exactly 0.5 in float64 -> TP
    assert ap(ava_eval.evaluate(g, [det((0.0, 0.0, 0.5, 1.0), 1, 0.9)], LABELS), "a") == 1.0
    # exact 1/2 again (x 0..0.1 vs 0..0.2, full height) but float64 rounds it to
    # 0.49999999999999994 -> FP, as in the official evaluator (float32 would say TP)
    g = [gt((0.0, 0.0, 0.2, 1.0), 1)]
    d = [det((0.0, 0.0, 0.1, 1.0), 1, 0.9)]
    iou = ava_eval.iou_matrix(np.array([[0, 0, 1, 0.1]]), np.array([[0, 0, 1, 0.2]]))[0, 0]
    assert iou < 0.5 and np.float32(0.1) / np.float32(0.2) >= 0.5
    assert ap(ava_eval.evaluate(g, d, LABELS), "a") == 0.0


def test_score_ties():
    g = [gt(A, 1), gt(B, 1)]
    # Two TPs tied: order is irrelevant -> AP 1.
    m = ava_eval.evaluate(g, [det(A, 1, 0.5), det(B, 1, 0.5)], LABELS)
    assert ap(m, "a") == 1.0
    # TP/FP tie: the official result depends on numpy's sort order; ours is the same call
    # (argsort(scores)[::-1]) so the value must be one of the two orders' APs: TP first = .5,
    # FP first = .25 (precision 1/2 at recall 1/2).
    m = ava_eval.evaluate(g, [det(A, 1, 0.5), det(C, 1, 0.5)], LABELS)
    assert ap(m, "a") in (pytest.approx(0.5), pytest.approx(0.25))
    order = np.argsort(np.array([0.5, 0.5]))[::-1]
    assert ap(m, "a") == pytest.approx(0.5 if order[0] == 0 else 0.25)


def test_invalid_boxes_unknown_ids_and_activitynet_cap():
    g = [gt(A, 1)]
    # inverted box dropped silently (not an FP); id 7 is not in the label map
    d = [det((0.4, 0.0, 0.0, 0.4), 1, 0.99), det(A, 7, 0.98), det(A, 1, 0.5)]
    assert ap(ava_eval.evaluate(g, d, LABELS), "a") == 1.0
    # 50 FPs of class 2 above the TP: ActivityNet keeps the top 50 rows of the key, so the TP
    # is dropped (AP 0); PySlowFast keeps everything (TP ranked 51st: AP = 1/51).
    d = [det(B, 1, 0.9)] * 50 + [det(A, 1, 0.1)]
    assert ap(ava_eval.evaluate(g, d, LABELS, protocol="activitynet"), "a") == 0.0
    assert ap(ava_eval.evaluate(g, d, LABELS, protocol="pyslowfast"), "a") == pytest.approx(1 / 51)
    with pytest.raises(ValueError, match="protocol"):
        ava_eval.evaluate(g, d, LABELS, protocol="voc")


def test_evaluate_files_and_cli(tmp_path, capsys):
    ava_files.write_annotations(str(tmp_path / "gt.csv"), [gt(A, 1), gt(B, 2, sec=903)])
    ava_files.write_detections(str(tmp_path / "det.csv"),
                               ava_files.detections_from_scores(
                                   [("v", 902)], [A], [np.linspace(0.9, 0.1, 80)], LABELS))
    ava_files.write_label_map(str(tmp_path / "map.pbtxt"), LABELS)
    ava_files.write_exclusions(str(tmp_path / "ex.csv"), [("v", 903)])
    args = ["--groundtruth", str(tmp_path / "gt.csv"), "--detections", str(tmp_path / "det.csv"),
            "--label_map", str(tmp_path / "map.pbtxt"), "--exclusions", str(tmp_path / "ex.csv")]
    m = ava_eval.main(args)
    assert m[ava_eval.MAP_KEY] == 1.0 and math.isnan(ap(m, "b"))
    assert '"PascalBoxes_Precision/mAP@0.5IOU": 1.0' in capsys.readouterr().out
    assert ava_eval.main(args + ["--protocol", "pyslowfast"])[ava_eval.MAP_KEY] == 1.0
    capsys.readouterr()
    (tmp_path / "det.csv").write_text("v,0902,0.1,0.1,0.2\n")
    with pytest.raises(SystemExit) as e:
        ava_eval.main(args)
    assert e.value.code == 2
    assert "det.csv:1: expected 8 columns" in capsys.readouterr().err


def test_rounded_scores_make_ties_exact_scores_keep_the_map(tmp_path):
    """Why train.py writes exact scores: an FP at 0.50724 outranks the TP at 0.50716 (AP 1/2), but
    at 4 decimals both read back as 0.5072, the sort puts the TP first and the file says AP 1."""
    g = [gt(A, 1)]
    d = [det(A, 1, 0.50724, sec=903), det(A, 1, 0.50716, sec=902)]  # no ground truth at 903
    ava_files.write_annotations(str(tmp_path / "gt.csv"), g)
    ava_files.write_label_map(str(tmp_path / "map.pbtxt"), LABELS)
    in_memory = ava_eval.evaluate(g, d, LABELS)[ava_eval.MAP_KEY]
    assert in_memory == 0.5
    for decimals, expected in ((4, 1.0), (None, in_memory)):
        path = str(tmp_path / f"det{decimals}.csv")
        ava_files.write_detections(path, d, score_decimals=decimals)
        from_file = ava_eval.evaluate_files(str(tmp_path / "gt.csv"), path,
                                            str(tmp_path / "map.pbtxt"))
        assert from_file[ava_eval.MAP_KEY] == expected
    assert open(path).read().splitlines()[0].endswith(",1,0.50724")
