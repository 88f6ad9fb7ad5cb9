"""Charades frame lists -> records -> window labels, reference test sampling, mAP, and a tiny run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data import transforms
from slowfast_tf.data.records import parse_sequence_example
from tfrecords_tools import charades, cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("charades")
    lists = charades.write_synthetic(str(root), {"train": 8, "val": 4}, seed=3)
    out = root / "records"
    manifests = {
        split: cli.main(["convert", "--input_format", "charades", "--input", path,
                         "--path_prefix", str(root / "frames"), "--split", split,
                         "--output_dir", str(out), "--short_side", "0", "--num_shards", "2"])
        for split, path in lists.items()
    }
    return root, out, manifests


def _read(pattern):
    out = {}
    for path in sorted(tf.io.gfile.glob(pattern)):
        for serialized in tf.data.TFRecordDataset(path):
            rec = parse_sequence_example(serialized)
            out[rec["video_id"].numpy().decode()] = rec
    return out


def test_frame_list_parsing_and_errors(dataset, tmp_path):
    root = dataset[0]
    videos = charades.read_frame_list(str(root / "train.csv"), str(root / "frames"))
    assert len(videos) == 8 and all(len(v.frames) == 24 for v in videos)
    first = videos[0]
    assert [f[0] for f in first.frames] == list(range(24))
    assert first.labels == sorted({lab for _, _, labs in first.frames for lab in labs})
    assert len(first.labels) >= 2 and not first.error
    bad = tmp_path / "bad.csv"
    bad.write_text("video path labels\n")
    with pytest.raises(ValueError, match="header"):
        charades.read_frame_list(str(bad))
    bad.write_text(" ".join(charades.HEADER) + '\nV 0 0 V/x.jpg "1,a"\n')
    with pytest.raises(ValueError, match=r"class indices.*'1,a'.*bad.csv:2"):
        charades.read_frame_list(str(bad))


def test_records_keep_frames_and_per_frame_labels(dataset):
    root, out, manifests = dataset
    assert manifests["train"]["splits"]["train"]["videos"] == 8
    assert manifests["val"]["splits"]["val"]["frames"] == 4 * 24
    records = _read(str(out / "train-*.tfrecord"))
    videos = {v.video_id: v for v in charades.read_frame_list(str(root / "train.csv"),
                                                              str(root / "frames"))}
    assert sorted(records) == sorted(videos)
    for vid, rec in records.items():
        video = videos[vid]
        assert rec["label_index"].numpy().tolist() == video.labels  # video-level union
        frame_labels = rec["frame_labels"].numpy()
        assert frame_labels.shape[0] == 24
        for row, (_, _path, labs) in zip(frame_labels, video.frames):
            assert sorted(x for x in row if x >= 0) == list(labs)
        with open(video.frames[5][1], "rb") as f:  # JPEG bytes unchanged, no resampling
            assert rec["frames"].numpy()[5] == f.read()
    assert (out / "classes.txt").read_text().split() == [f"c{i:03d}" for i in range(157)]


def _reference_test_start(length, num_frames, rate, k, views):
    clip = (num_frames - 1) * rate + 1
    gap = float(max(length - clip, 0)) / (views - 1)
    return int(round(gap * k))


@pytest.mark.parametrize("length", [5, 37, 100])
def test_charades_test_sampling_matches_reference(length):
    num_frames, rate, views = 8, 4, 10

    def indices(k):
        return transforms.charades_sample_indices(length, num_frames, rate, k, views)

    ds = tf.data.Dataset.range(views).map(indices)
    for k, in_map in enumerate(ds):
        start = _reference_test_start(length, num_frames, rate, k, views)
        want = [max(min(start + i * rate, length - 1), 0) for i in range(num_frames)]
        assert indices(k).numpy().tolist() == want == in_map.numpy().tolist()
    if length > 29:  # endpoints included: the last clip ends on the last frame
        assert indices(views - 1).numpy()[-1] == length - 1
    # Training: starts uniform over [0, L - clip] (clamped to 0 for short videos).
    ds = tf.data.Dataset.range(300).map(lambda s: transforms.charades_sample_indices(
        length, num_frames, rate, -1, seed=tf.stack([tf.cast(s, tf.int32), 1]))[0])
    starts = [int(x) for x in ds]  # stateless seeds: the same values on every run
    hi = max(length - (num_frames - 1) * rate - 1, 0)
    assert 0 == min(starts) or (hi > 0 and min(starts) <= 3)
    assert max(starts) == hi or max(starts) >= hi - 3


def test_window_label_union():
    frame_labels = tf.constant([[0, -1], [1, 2], [-1, -1], [3, -1], [2, -1]], tf.int64)
    got = transforms.window_label_union(frame_labels, tf.constant([1, 3]), 5).numpy()
    np.testing.assert_array_equal(got, [0, 1, 1, 1, 0])  # frames 1..3 inclusive
    ds = tf.data.Dataset.from_tensors(frame_labels).map(
        lambda f: transforms.window_label_union(f, tf.constant([0, 0]), 5))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), [1, 0, 0, 0, 0])


def test_train_labels_are_window_unions_and_test_labels_video_unions(dataset):
    from slowfast_tf.data import build_dataset, get_data_config

    _, out, _ = dataset
    config = get_data_config("charades_slowfast_16x8").replace(
        num_frames=4, sampling_rate=2, train_crop=32, test_crop=32, train_jitter_scales=(32, 32),
        num_clips=2, num_crops=1, num_classes=157,
    )
    records = _read(str(out / "train-*.tfrecord"))
    unions = {}
    for rec in records.values():  # every window union of 7 consecutive frames
        fl = rec["frame_labels"].numpy()
        for s in range(24 - 6):
            unions.setdefault(tuple(rec["label_index"].numpy()), set()).add(
                tuple(sorted({int(x) for x in fl[s : s + 7].ravel() if x >= 0})))
    ds = build_dataset(str(out / "train-*.tfrecord"), config, "train", batch_size=8, seed=0,
                       repeat=False)
    (_, labels), = list(ds)
    seen_partial = False
    for label in labels.numpy():
        got = tuple(np.nonzero(label)[0].tolist())
        owners = [v for v, windows in unions.items() if got in windows]
        assert owners, got
        seen_partial |= all(got != v for v in owners)
    assert seen_partial  # some window holds fewer labels than its video
    test = build_dataset(str(out / "val-*.tfrecord"), config, "test", batch_size=8)
    val = _read(str(out / "val-*.tfrecord"))
    want = sorted(tuple(r["label_index"].numpy()) for r in val.values() for _ in range(2))
    got = sorted(tuple(np.nonzero(lab)[0]) for _, labels, _ in test for lab in labels.numpy())
    assert got == want


def test_map_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from slowfast_tf.training.metrics import mean_average_precision

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((40, 6)), 1)  # rounding makes ties
    targets = (rng.random((40, 6)) < 0.3).astype(int)
    targets[:, 4] = 0  # a class without positives is left out, as PySlowFast's get_map
    aps = [sklearn_metrics.average_precision_score(targets[:, c], scores[:, c])
           for c in range(6) if targets[:, c].any()]
    assert len(aps) == 5
    np.testing.assert_allclose(mean_average_precision(scores, targets), np.mean(aps), rtol=1e-12)


@pytest.mark.slow
def test_convert_train_map_end_to_end(dataset, tmp_path):
    _, out, _ = dataset
    data = {"num_frames": 4, "sampling_rate": 2, "train_crop": 32, "test_crop": 32,
            "train_jitter_scales": [32, 32], "num_clips": 2, "num_crops": 1, "num_classes": 4}
    model = {"depth": 18, "width": 8, "num_frames": 4}
    cmd = [
        sys.executable, os.path.join(REPO, "train.py"), "--mode=train_and_eval",
        "--model=slowfast_r50_16x8", "--data_preset=charades_slowfast_16x8",
        f"--data_overrides={json.dumps(data)}", f"--model_overrides={json.dumps(model)}",
        "--num_classes=4", "--multi_label", "--ensemble=max",
        f"--train_file_pattern={out}/train-*.tfrecord",
        f"--test_file_pattern={out}/val-*.tfrecord",
        "--epochs=2", "--steps_per_epoch=2", "--batch_size=4", "--warmup_epochs=0",
        "--base_lr=0.05", "--base_batch_size=4", "--verbose=0", "--notensorboard",
        f"--model_dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "eval_summary.json").read_text())
    flat = json.dumps(summary)
    assert "mAP" in flat
    value = summary.get("mAP", summary.get("summary", {}).get("mAP"))
    assert value is not None and 0.0 < value <= 100.0
