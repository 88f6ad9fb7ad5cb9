"""Cross-layer round trip: synthetic MP4s -> tfrecords_tools convert -> build_dataset clips."""

import av
import numpy as np
import pytest

from slowfast_tf.data import DataConfig, build_dataset, synthetic
from tfrecords_tools import cli

CLASSES = ("flicker_low", "grow")
CONFIG = DataConfig(
    num_frames=4, sampling_rate=2, alpha=2, target_fps=30.0, train_crop=24, test_crop=32,
    train_jitter_scales=(32, 36), num_clips=2, num_crops=1, num_classes=2,
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    data = root / "data"
    synthetic.generate(str(data), {"train": 2}, size=32, seconds=0.6, seed=4, classes=CLASSES,
                       progress=False)
    out = root / "records"
    manifest = cli.main([
        "convert", "--input", str(data / "train.csv"), "--path_prefix", str(data),
        "--split", "train", "--output_dir", str(out), "--classes", str(data / "classes.txt"),
        "--target_fps", "15", "--short_side", "0", "--num_shards", "2", "--workers", "0",
        "--noprogress",
    ])
    return data, out, manifest


def source_frames(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_manifest_counts(converted):
    _, out, manifest = converted
    train = manifest["splits"]["train"]
    # 18 source frames at 30 fps -> 9 frames at 15 fps per video
    assert train == {"videos": 4, "failures": 0, "shards": 2, "frames": 36,
                     "per_class": {"flicker_low": 2, "grow": 2}}
    assert manifest["settings"]["target_fps"] == 15.0


def test_train_clips(converted):
    _, out, _ = converted
    ds = build_dataset(str(out / "train-*.tfrecord"), CONFIG, "train", batch_size=2, seed=0)
    inputs, labels = next(iter(ds))
    assert inputs["fast"].shape == (2, 4, 24, 24, 3) and inputs["slow"].shape == (2, 2, 24, 24, 3)
    assert set(labels.numpy().tolist()) <= {0, 1}


def test_test_clips_equal_source_frames(converted):
    data, out, _ = converted
    ds = build_dataset(str(out / "train-*.tfrecord"), CONFIG, "test", batch_size=2)
    mean, std = np.float32(CONFIG.mean[0]), np.float32(CONFIG.std[0])
    lines = [line.split() for line in (data / "train.csv").read_text().split("\n") if line]
    by_label = {}
    for path, label in lines:
        by_label.setdefault(int(label), []).append(source_frames(data / path))
    views = 0
    for inputs, labels, index in ds:
        for fast, label, video in zip(inputs["fast"].numpy(), labels.numpy(), index.numpy()):
            views += 1
            pixels = (fast * std + mean) * 255.0
            # Record at 15 fps: window = 2 * 4 / 30 * 15 = 4 record frames out of 9; delta = 5.
            # clip k of 2 starts at 2.5 k -> record frames [0,1,2,3] or [2,3,4,5];
            # record frame r is source frame 2 r.
            clip = views % 2 == 0
            record_idx = np.array([2, 3, 4, 5]) if clip else np.array([0, 1, 2, 3])
            matches = [
                np.abs(pixels - src[2 * record_idx].astype(np.float32)).mean()
                for src in by_label[int(label)]
            ]
            assert min(matches) < 4.0, (video, matches)  # JPEG + H.264 error only
            # ...and a wrong temporal offset is clearly worse
            wrong = min(np.abs(pixels - src[2 * record_idx + 2].astype(np.float32)).mean()
                        for src in by_label[int(label)])
            assert wrong > min(matches)
    assert views == 4 * CONFIG.num_views
