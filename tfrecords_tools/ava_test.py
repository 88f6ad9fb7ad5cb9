"""convert-ava end to end on the synthetic AVA-like set: files -> records -> pipeline -> mAP."""

import json

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data.ava import ava_files, ava_pipeline, ava_synthetic
from slowfast_tf.training import ava_eval
from tfrecords_tools import ava as ava_convert
from tfrecords_tools.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("ava_synth")
    # README: python -m slowfast_tf.data.ava.ava_synthetic --output_dir OUT
    ava_synthetic.main(["--output_dir", str(out), "--num_train", "2", "--num_val", "1", "--seconds", "4",
                        "--frames", "--seed", "1"])
    return out


def _convert(synth, out, *extra):
    return main(["convert-ava", "--annotations", str(synth / "train.csv"),
                 "--boxes", str(synth / "train_boxes.csv"), "--label_map", str(synth / "label_map.pbtxt"),
                 "--exclusions", str(synth / "train_exclusions.csv"), "--split", "train",
                 "--output_dir", str(out), "--time_offset", "900", *extra])


def test_synthetic_files_follow_the_ava_layout(synth):
    info = json.loads((synth / "ava_synthetic.json").read_text())
    assert info["counts"]["train"]["keyframes"] == 6 and info["counts"]["val"]["videos"] == 1
    gt = ava_files.read_annotations(str(synth / "train.csv"))
    assert {r.sec for r in gt} == {901, 902, 903}
    per_box = {}
    for r in gt:
        per_box.setdefault((r.key, r.person_id), set()).add(r.action_id)
    # multi-label: every actor has one flicker and one orbit label, several actors per keyframe
    assert all(len(labels & {1, 2}) == 1 and len(labels & {3, 4}) == 1 for labels in per_box.values())
    assert min(sum(k[0] == key for k in per_box) for key in {r.key for r in gt}) >= 2
    assert ava_files.read_label_map(str(synth / "label_map.pbtxt")) == {
        i: ava_synthetic.ACTIONS[i] for i in ava_synthetic.EVAL_IDS}
    assert len(ava_files.read_detections(str(synth / "train_boxes.csv"))) > len(per_box)
    assert ava_files.read_exclusions(str(synth / "train_exclusions.csv")) == {("train_000", 901)}
    assert len(list((synth / "frames" / "train_000").glob("*.jpg"))) == 120


def test_orbit_direction_is_aliased_at_the_slow_stride():
    fast_cw, slow_cw = [], []
    for i in range(12):
        frames, actors = ava_synthetic.render_video(np.random.default_rng([7, i]), 48, 64, 60,
                                                    num_actors=1)
        boxes = actors[0]["boxes"] * np.array([64, 48, 64, 48])
        angles = []
        for frame, (x1, y1, x2, y2) in zip(frames.astype(float), boxes, strict=True):
            ys, xs = np.nonzero(frame.sum(-1) < 30)  # the black dot
            angles.append(np.arctan2(ys.mean() - (y1 + y2) / 2, xs.mean() - (x1 + x2) / 2) / (2 * np.pi))
        angles = np.array(angles)
        sign = 1 if 3 in actors[0]["labels"] else -1
        fast = (np.diff(angles[0:40:2]) + 0.5) % 1 - 0.5
        slow = (np.diff(angles[0:60:10]) + 0.5) % 1 - 0.5
        fast_cw.append(np.mean(sign * fast > 0))
        slow_cw.append(np.mean(sign * slow > 0))
    assert np.mean(fast_cw) > 0.95  # direction always visible at the fast stride
    assert 0.2 < np.mean(slow_cw) < 0.8  # a coin flip at the slow stride


def test_generation_is_deterministic(synth, tmp_path):
    ava_synthetic.generate(str(tmp_path), {"train": 2}, seconds=4, seed=1)
    for name in ("train.csv", "train_boxes.csv", "videos/train_001.mp4"):
        assert (tmp_path / name).read_bytes() == (synth / name).read_bytes()


@pytest.mark.slow  # ~40 s on 2 cores: two conversions, decoding, two pipelines
def test_convert_videos_and_frames_then_pipeline_and_eval(synth, tmp_path, capsys):
    out = tmp_path / "records"
    summary = _convert(synth, out, "--videos", str(synth / "videos"), "--short_side", "0")
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["keyframes"] == 6 and printed["videos"] == 2 and printed["failures"] == 0
    assert printed["bytes_per_keyframe"] == summary["bytes_per_keyframe"] > 0
    # 4 s videos: the segment holds all 120 frames for 3 keyframes
    assert summary["frames_per_keyframe"] == 40.0
    for name in ("label_map.pbtxt", "train_groundtruth.csv", "train_exclusions.csv", "train_ava.json"):
        assert (out / name).exists()
    # frame folders give the same keyframes and boxes
    frames_out = tmp_path / "from_frames"
    _convert(synth, frames_out, "--frames", str(synth / "frames"))
    a = [tf.train.SequenceExample.FromString(r.numpy())
         for r in tf.data.TFRecordDataset(sorted(map(str, out.glob("train-*.tfrecord"))))]
    b = [tf.train.SequenceExample.FromString(r.numpy())
         for r in tf.data.TFRecordDataset(sorted(map(str, frames_out.glob("train-*.tfrecord"))))]
    assert len(a) == len(b) == 2
    for key in ("region/bbox/xmin", "region/label/index", "PREDICTED/region/label/confidence"):
        assert a[0].feature_lists.feature_list[key] == b[0].feature_lists.feature_list[key]

    config = ava_pipeline.AVA_DATA_PRESETS["ava_synthetic"]
    pattern = str(out / "train-*.tfrecord")
    inputs, labels = next(iter(ava_pipeline.build_ava_dataset(pattern, config, "train", 2)))
    assert inputs["fast"].shape == (2, 16, 32, 32, 3) and inputs["slow"].shape == (2, 4, 32, 32, 3)
    assert labels.shape == (2, 4, 80) and inputs["box_mask"].shape == (2, 4)
    # the README's full-size preset (element_spec only: nothing is decoded)
    full = ava_pipeline.build_ava_dataset(pattern, ava_pipeline.AVA_DATA_PRESETS["ava_slowfast_32x2"],
                                          "train", 8).element_spec
    assert full[0]["slow"].shape == (8, 8, 224, 224, 3) and full[0]["fast"].shape == (8, 32, 224, 224, 3)
    assert full[0]["boxes"].shape == (8, 32, 4) and full[0]["box_mask"].shape == (8, 32)
    assert full[1].shape == (8, 32, 80)

    # oracle: ground-truth boxes at test time, "scores" = the labels -> frame-mAP 1 under both
    # protocols, through the official detections CSV
    oracle = ava_pipeline.AvaDataConfig(**{**config.__dict__, "test_boxes": "groundtruth"})
    keys, boxes, scores = [], [], []
    for inputs, labels, meta in ava_pipeline.build_ava_dataset(pattern, oracle, "test", 2):
        for b in range(labels.shape[0]):
            for m in np.flatnonzero(inputs["box_mask"][b].numpy()):
                keys.append((meta["video_id"][b].numpy().decode(), int(meta["sec"][b])))
                boxes.append(meta["ori_boxes"][b, m].numpy())
                scores.append(labels[b, m].numpy())
    assert len(keys) == 6 * 2 + 3  # 2-3 actors per video, ids per actor merged
    label_map = ava_files.read_label_map(str(out / "label_map.pbtxt"))
    det_csv = str(tmp_path / "detections.csv")
    ava_files.write_detections(det_csv, ava_files.detections_from_scores(keys, boxes, scores, label_map))
    maps = {protocol: ava_eval.evaluate_files(
        str(out / "train_groundtruth.csv"), det_csv, str(out / "label_map.pbtxt"),
        str(out / "train_exclusions.csv"), protocol)[ava_eval.MAP_KEY]
        for protocol in ava_eval.PROTOCOLS}
    assert maps["activitynet"] == 1.0
    # PySlowFast matches in input order: where two actors overlap (IoU >= .5), another actor's
    # 0-score row can take a GT before its own 1-score row is reached
    assert 0.9 < maps["pyslowfast"] <= 1.0


def test_convert_resumes_and_reports_failures(synth, tmp_path, capsys):
    out = tmp_path / "records"
    _convert(synth, out, "--videos", str(synth / "videos"), "--short_side", "0")
    shard = next(out.glob("train-*.tfrecord"))
    stamp = shard.stat().st_mtime_ns
    again = _convert(synth, out, "--videos", str(synth / "videos"), "--short_side", "0")
    assert shard.stat().st_mtime_ns == stamp and again["keyframes"] == 6  # kept, counts restored
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "train_000.mp4").write_bytes(b"not a video")
    summary = _convert(synth, tmp_path / "broken", "--videos", str(tmp_path / "vids"))
    reasons = {f["video_id"]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"train_000", "train_001"} and "not found" in reasons["train_001"]
    assert summary["keyframes"] == 0


def test_convert_errors_are_one_line_exit_2(synth, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("train_000,0901,0.1,0.1,0.2,0.2,81,0\n")
    with pytest.raises(SystemExit) as e:
        main(["convert-ava", "--annotations", str(bad), "--label_map", str(synth / "label_map.pbtxt"),
              "--videos", str(synth / "videos"), "--split", "train", "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "action ids must be in 1..80" in err and "\n" not in err
    bad.write_text("train_000,0901,0.1,0.1\n")
    with pytest.raises(SystemExit):
        main(["convert-ava", "--annotations", str(bad), "--label_map", str(synth / "label_map.pbtxt"),
              "--videos", str(synth / "videos"), "--split", "train", "--output_dir", str(tmp_path / "o")])
    assert "bad.csv:1: expected 7 or 8 columns" in capsys.readouterr().err


def test_plan_segments_covers_every_clip():
    keyframes = list(range(902, 1799))
    plan = ava_convert.plan_segments(keyframes, 27000, 30.0, 900, 10, 32)
    assert len(plan) == 90 and sum(len(s) for s, _, _ in plan) == len(keyframes)
    for secs, lo, hi in plan:
        for sec in secs:
            c = (sec - 900) * 30
            assert lo <= max(c - 32, 0) and min(c + 31, 26999) < hi
    frames = sum(hi - lo for _, lo, hi in plan)
    # a 10-keyframe segment stores 9 * 30 + 64 = 334 frames: 33.4 per keyframe (vs 64 per-keyframe)
    assert frames / len(keyframes) == pytest.approx((89 * 334 + 6 * 30 + 64) / 897)
