"""build_dataset end to end on in-memory fake records (index-coded grey frames)."""

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data import (
    CorruptRecordCounter,
    DataConfig,
    build_dataset,
    get_data_config,
    make_distributed_dataset,
    parse_sequence_example,
    preprocess_test_view,
    preprocess_train,
)
from slowfast_tf.data.records import count_records
from slowfast_tf.testing.fake_records import fake_video_record, frame_index_of, write_records

CONFIG = DataConfig(
    num_frames=8, sampling_rate=2, alpha=4, train_crop=24, test_crop=32,
    train_jitter_scales=(32, 40), num_clips=2, num_crops=3, num_classes=5,
)


def unnormalize(x, config=CONFIG):
    return (np.asarray(x) * config.std[0] + config.mean[0]) * 255.0


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    records = [
        fake_video_record(40, 36, 48, (i % 5,), video_id=f"v{i}", fps=30.0) for i in range(6)
    ]
    write_records(root / "train-00000-of-00002.tfrecord", records[:3])
    write_records(root / "train-00001-of-00002.tfrecord", records[3:])
    return str(root / "train-*.tfrecord")


def test_train_batches(shards):
    ds = build_dataset(shards, CONFIG, "train", batch_size=4, seed=0)
    assert ds.element_spec[0]["slow"].shape.as_list() == [4, 2, 24, 24, 3]
    assert ds.element_spec[0]["fast"].shape.as_list() == [4, 8, 24, 24, 3]
    seen = set()
    for inputs, label in ds.take(3):  # repeats forever: 12 clips from 6 videos
        assert label.dtype == tf.int32 and inputs["fast"].dtype == tf.float32
        fast = frame_index_of(unnormalize(inputs["fast"]))
        slow = frame_index_of(unnormalize(inputs["slow"]))
        # window of 16 native frames at 30 fps: 8 frames 2 apart (one step can be 3 by truncation)
        assert np.all((np.diff(fast, axis=1) >= 2) & (np.diff(fast, axis=1) <= 3))
        np.testing.assert_array_equal(slow, fast[:, [0, 7]])  # linspace(0, 7, 2) = first, last
        seen.update(label.numpy().tolist())
    assert len(seen) >= 3


def test_train_is_reproducible_with_seed(shards):
    a = next(iter(build_dataset(shards, CONFIG, "train", batch_size=4, seed=3)))
    b = next(iter(build_dataset(shards, CONFIG, "train", batch_size=4, seed=3)))
    np.testing.assert_array_equal(a[0]["fast"], b[0]["fast"])
    np.testing.assert_array_equal(a[1], b[1])


def test_window_follows_record_fps(tmp_path):
    # A 60 fps record needs twice as many native frames for the same 30 fps sampling rate.
    path = write_records(tmp_path / "r.tfrecord", [fake_video_record(60, 32, 32, (0,), fps=60.0)])
    inputs, _ = next(iter(build_dataset(path, CONFIG, "train", batch_size=1, seed=0)))
    fast = frame_index_of(unnormalize(inputs["fast"]))[0]
    assert np.all((np.diff(fast) >= 4) & (np.diff(fast) <= 5))


def test_test_mode_views_and_video_index(shards):
    ds = build_dataset(shards, CONFIG, "test", batch_size=5)
    inputs, labels, index = [], [], []
    for x, y, i in ds:
        assert x["fast"].shape[1:] == (8, 32, 32, 3) and x["slow"].shape[1:] == (2, 32, 32, 3)
        inputs.append(frame_index_of(unnormalize(x["fast"])))
        labels.append(y.numpy())
        index.append(i.numpy())
    frames, labels, index = map(np.concatenate, (inputs, labels, index))
    assert len(index) == 6 * CONFIG.num_views  # no view dropped: last partial batch kept
    np.testing.assert_array_equal(index, np.repeat(np.arange(6), 6))
    np.testing.assert_array_equal(labels, np.repeat(np.arange(6) % 5, 6))
    # clip 0 starts at 0, clip 1 at delta/2 = (40 - 16) / 2 = 12; 3 crops share each clip
    np.testing.assert_array_equal(frames[0], [0, 2, 4, 6, 8, 10, 12, 15])
    np.testing.assert_array_equal(frames[3], [12, 14, 16, 18, 20, 22, 24, 27])
    np.testing.assert_array_equal(frames[:3], frames[[0, 0, 0]])


def test_multi_label_and_single_pathway(tmp_path):
    path = write_records(tmp_path / "ml.tfrecord", [
        fake_video_record(20, 32, 32, (0, 3)), fake_video_record(20, 32, 32, ()),
    ])
    config = CONFIG.replace(multi_label=True, num_frames=4, sampling_rate=4, pathways=("slow",))
    x, y = next(iter(build_dataset(path, config, "val", batch_size=2)))
    assert list(x) == ["slow"] and x["slow"].shape == (2, 4, 24, 24, 3)
    np.testing.assert_array_equal(y.numpy(), [[1, 0, 0, 1, 0], [0, 0, 0, 0, 0]])


def test_corrupt_records_are_skipped_and_counted(tmp_path):
    good = [fake_video_record(20, 32, 32, (i,)) for i in range(4)]
    bad_proto = b"this is not a SequenceExample"
    bad_jpeg = fake_video_record(20, 32, 32, (4,)).replace(b"\xff\xd8", b"\x00\x00")
    path = write_records(tmp_path / "c.tfrecord", [good[0], bad_proto, good[1], bad_jpeg, *good[2:]])
    counter = CorruptRecordCounter()
    labels = [y.numpy() for _, y in build_dataset(path, CONFIG, "val", 1, corrupt_counter=counter)]
    assert sorted(np.concatenate(labels).tolist()) == [0, 1, 2, 3]
    assert counter.value() == 2
    counter.reset()
    test_ds = build_dataset(path, CONFIG, "test", 6, corrupt_counter=counter)
    index = np.concatenate([i.numpy() for _, _, i in test_ds])
    assert sorted(set(index.tolist())) == [0, 2, 4, 5] and counter.value() == 2
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(build_dataset(path, CONFIG, "val", 1, skip_corrupt=False))


def test_broken_tfrecord_frame_ends_only_that_shard(tmp_path):
    broken = write_records(tmp_path / "a.tfrecord", [fake_video_record(10, 32, 32, (i,)) for i in range(3)])
    write_records(tmp_path / "b.tfrecord", [fake_video_record(10, 32, 32, (4,))])
    data = bytearray(open(broken, "rb").read())
    data[len(data) // 2] ^= 0xFF  # inside record 1: its CRC no longer matches
    open(broken, "wb").write(bytes(data))
    ds = build_dataset(str(tmp_path / "*.tfrecord"), CONFIG, "val", 1)
    assert sorted(int(y) for _, y in ds.unbatch()) == [0, 4]
    with pytest.raises(tf.errors.DataLossError):
        list(build_dataset(str(tmp_path / "*.tfrecord"), CONFIG, "val", 1, skip_corrupt=False))


def test_truncated_shard_is_named_with_records_lost_and_counting_survives(tmp_path, capfd, caplog):
    records_ = [fake_video_record(10, 32, 32, (i,), video_id=f"t{i}") for i in range(3)]
    full = write_records(tmp_path / "full.tfrecord", records_)
    short = tmp_path / "short.tfrecord"
    data = open(full, "rb").read()
    short.write_bytes(data[: len(data) - 40])  # a copy cut off inside its last record
    write_records(tmp_path / "other.tfrecord", [fake_video_record(10, 32, 32, (4,))])
    # Counting (train.py's steps per epoch) used to raise DataLossError on the same shard.
    with caplog.at_level("WARNING"):
        assert count_records([str(short), str(tmp_path / "other.tfrecord")]) == 3
    assert f"{short}: truncated or corrupt TFRecord shard: read 2 records" in caplog.text
    assert "~1 records" in caplog.text
    capfd.readouterr()
    ds = build_dataset([str(short), str(tmp_path / "other.tfrecord")], CONFIG, "val", 1)
    assert sorted(int(y) for _, y in ds.unbatch()) == [0, 1, 4]
    err = capfd.readouterr().err
    assert f"WARNING slowfast_tf.data: {short}: truncated or corrupt TFRecord shard: read 2 records" in err
    assert "(~1 records) are skipped" in err and "full.tfrecord" not in err


@pytest.mark.parametrize("mode", ["train", "test"])
def test_out_of_range_label_stops_with_file_record_and_video(tmp_path, mode):
    path = write_records(tmp_path / "l.tfrecord", [
        fake_video_record(20, 32, 32, (1,), video_id="ok"),
        fake_video_record(20, 32, 32, (9,), video_id="bad_label"),  # CONFIG has 5 classes
    ])
    # Not skipped as a "corrupt record": a wrong label (or num_classes) must stop the run.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"l\.tfrecord record 1 \(video/id bad_label\): label \[9\] is out of "
                             r"range for num_classes=5"):
        list(build_dataset(path, CONFIG, mode, 1, repeat=False))


def test_unlabelled_records_pass_only_in_test_mode(tmp_path):
    path = write_records(tmp_path / "u.tfrecord", [
        fake_video_record(20, 32, 32, (), label_texts=[], video_id="nolabel"),
        fake_video_record(20, 32, 32, (2,), video_id="two"),
    ])
    labels = [y for _, y, _ in build_dataset(path, CONFIG, "test", 6)]
    assert np.concatenate(labels).tolist() == [-1] * 6 + [2] * 6  # the evaluator drops -1
    for mode in ("train", "val"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="only allowed in test mode"):
            list(build_dataset(path, CONFIG, mode, 1, repeat=False))
    multi = get_data_config("charades_slowfast_16x8", num_classes=5)
    assert multi.multi_label
    with pytest.raises(tf.errors.InvalidArgumentError, match="label \\[2,7\\] is out of range"):
        bad = write_records(tmp_path / "m.tfrecord", [fake_video_record(20, 32, 32, (2, 7))])
        list(build_dataset(bad, multi, "val", 1))


def test_input_context_shards_videos(shards):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, 2)
        ds = build_dataset(shards, CONFIG.replace(num_clips=1, num_crops=1), "test", 4,
                           input_context=context)
        seen.append(np.concatenate([i.numpy() for _, _, i in ds]))
    assert set(seen[0]).isdisjoint(seen[1])
    assert len(seen[0]) + len(seen[1]) == 6


def test_make_distributed_dataset():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    tmp = tf.io.gfile.join(tf.compat.v1.test.get_temp_dir(), "dist.tfrecord")
    write_records(tmp, [fake_video_record(20, 32, 32, (i % 5,)) for i in range(4)])
    dist = make_distributed_dataset(strategy, tmp, CONFIG, "train", global_batch_size=2, seed=0)
    inputs, label = next(iter(dist))
    assert inputs["fast"].shape == (2, 8, 24, 24, 3) and label.shape == (2,)

    class TwoReplicas:  # only num_replicas_in_sync is read before the check
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="divisible"):
        make_distributed_dataset(TwoReplicas(), tmp, CONFIG, "train", 3)


def test_bad_arguments(shards):
    with pytest.raises(ValueError, match="mode"):
        build_dataset(shards, CONFIG, "eval", 2)
    with pytest.raises(ValueError, match="No files"):
        build_dataset("/nonexistent/*.tfrecord", CONFIG, "train", 2)
    with pytest.raises(ValueError, match="multiple of alpha"):
        CONFIG.replace(num_frames=10)
    with pytest.raises(ValueError, match="num_crops"):
        CONFIG.replace(num_crops=2)
    with pytest.raises(ValueError, match="train_crop"):
        CONFIG.replace(train_crop=64)


def test_presets_follow_model_names():
    assert get_data_config("slowfast_r50_8x8").frames_per_pathway() == {"slow": 8, "fast": 32}
    assert get_data_config("slowfast_r50_4x16").frames_per_pathway() == {"slow": 4, "fast": 32}
    assert get_data_config("slowfast_nln_r101_50_50_16x8").num_frames == 64
    slow = get_data_config("slow_r50_8x8")
    assert slow.frames_per_pathway() == {"slow": 8} and slow.sampling_rate == 8
    assert get_data_config("i3d_r101_8x8").pathways == ("slow",)
    assert get_data_config("fast_r50_32x2").frames_per_pathway() == {"fast": 32}
    assert get_data_config("slowfast_8x8", num_classes=10).num_classes == 10
    r2p1d = get_data_config("r2plus1d_r34")
    assert r2p1d.frames_per_pathway() == {"slow": 16} and r2p1d.test_crop == 112
    assert get_data_config("mc3_r18") == r2p1d
    assert get_data_config("r2plus1d_r18_torchvision").mean == (0.43216, 0.394666, 0.37645)
    with pytest.raises(ValueError, match="Unknown data preset"):
        get_data_config("x3d_m")


def test_preprocess_ops_eager_equals_dataset_map():
    record = fake_video_record(30, 36, 48, (2,))
    seed = tf.constant([5, 6])

    def train_fn(serialized):
        return preprocess_train(parse_sequence_example(serialized), CONFIG, seed=seed)

    def test_fn(serialized):
        return preprocess_test_view(parse_sequence_example(serialized), 4, CONFIG)

    for fn, crop in ((train_fn, 24), (test_fn, 32)):
        eager = fn(tf.constant(record))
        mapped = next(iter(tf.data.Dataset.from_tensors(record).map(fn)))
        assert eager[0]["fast"].shape == (8, crop, crop, 3) and int(eager[1]) == 2
        np.testing.assert_allclose(eager[0]["fast"], mapped[0]["fast"], atol=1e-5)
        np.testing.assert_array_equal(eager[0]["slow"], mapped[0]["slow"])


def textured_record(num_frames, height, width, seed):
    """A record whose frames are smooth random textures (a flip or shifted crop changes them)."""
    from slowfast_tf.data.records import make_sequence_example

    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (num_frames, height // 4 + 2, width // 4 + 2, 3)).astype(np.float32)
    frames = tf.cast(tf.image.resize(base, [height, width]), tf.uint8).numpy()
    jpegs = [tf.io.encode_jpeg(f, quality=90).numpy() for f in frames]
    example = make_sequence_example(jpegs, [1], ["class_1"], video_id="tex", fps=30.0,
                                    height=height, width=width)
    return example.SerializeToString()


def reference_train_clip(parsed, config, seed):
    """preprocess_train spelled with the plain ops it was first written with (4-D tf.reverse,
    per-channel broadcast normalise): the fast paths must not change a value or a draw."""
    from slowfast_tf.data import transforms

    seeds = tf.random.experimental.stateless_split(seed, num=4)
    clip_size = transforms.clip_size_in_frames(
        parsed["fps"], config.num_frames, config.sampling_rate, config.target_fps
    )
    indices = transforms.temporal_sample_indices(
        tf.shape(parsed["frames"])[0], config.num_frames, clip_size, -1, 1, seed=seeds[0]
    )
    frames = transforms.decode_frames(parsed["frames"], indices)
    frames = transforms.random_short_side_scale(frames, *config.train_jitter_scales, seed=seeds[1])
    frames = transforms.random_crop(frames, config.train_crop, seed=seeds[2])
    if tf.random.stateless_uniform([], seeds[3]) < 0.5:
        frames = tf.reverse(frames, axis=[2])
    std = np.asarray(config.std, np.float32)
    frames = frames * (1.0 / (255.0 * std)) + (-np.asarray(config.mean, np.float32) / std)
    return frames


@pytest.mark.parametrize("height,width,jitter,crop", [
    (36, 48, (32, 40), 24),  # landscape, upscaled
    (37, 53, (30, 33), 29),  # odd sizes
    (53, 37, (28, 36), 27),  # portrait
    (24, 24, (24, 24), 24),  # crop == frame: offsets 0, the window touches every border
    (64, 80, (20, 26), 20),  # downscaled
    (16, 20, (24, 26), 24),  # frames smaller than the crop: the jitter upscales them first
])
def test_train_clip_equals_reference_ops(height, width, jitter, crop):
    import dataclasses

    config = dataclasses.replace(CONFIG, train_jitter_scales=jitter, train_crop=crop,
                                 mean=(0.43216, 0.394666, 0.37645),
                                 std=(0.22803, 0.22145, 0.216989))
    parsed = parse_sequence_example(tf.constant(textured_record(20, height, width, height)))
    flips = set()
    for s in range(6):
        seed = tf.constant([s, 11])
        inputs, _ = preprocess_train(parsed, config, seed=seed)
        expected = reference_train_clip(parsed, config, seed).numpy()
        np.testing.assert_array_equal(inputs["fast"], expected)
        np.testing.assert_array_equal(inputs["slow"], expected[[0, 7]])
        flips.add(bool(tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_split(seed, num=4)[3]) < 0.5))
    assert flips == {True, False}  # both branches compared

