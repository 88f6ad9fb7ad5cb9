"""Each op runs eagerly AND inside ``Dataset.map`` (big_vision ``tfrun`` style)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data import transforms
from slowfast_tf.data.records import parse_sequence_example
from slowfast_tf.testing.fake_records import fake_video_record, frame_index_of


def run_both(fn, *args):
    """Returns ``[eager_result, dataset_map_result]`` of ``fn(*args)`` as numpy."""
    eager = tf.nest.map_structure(lambda t: np.asarray(t), fn(*args))
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(fn)
    mapped = tf.nest.map_structure(lambda t: np.asarray(t), next(iter(ds)))
    return [eager, mapped]


def reference_indices(n, num_frames, clip_size, clip_idx, num_clips, u=0.0):
    """PySlowFast get_start_end_idx + temporal_sampling, written with torch's linspace."""
    torch = pytest.importorskip("torch")
    delta = max(n - clip_size, 0)
    start = u * delta if clip_idx == -1 else delta * clip_idx / num_clips
    end = start + clip_size - 1
    index = torch.linspace(start, end, num_frames)
    return torch.clamp(index, 0, n - 1).long().numpy()


@pytest.mark.parametrize("n,clip_size,clip_idx", [(300, 64, 0), (300, 64, 9), (250, 64, 3),
                                                    (40, 64, 5), (61, 32.0, 7), (90, 48.5, 2)])
def test_test_clip_indices_match_reference(n, clip_size, clip_idx):
    expected = reference_indices(n, 32, clip_size, clip_idx, 10)
    for got in run_both(
        lambda n_, c_, k_: transforms.temporal_sample_indices(n_, 32, c_, k_, 10),
        n, float(clip_size), clip_idx,
    ):
        np.testing.assert_array_equal(got, expected)


def test_train_indices_are_a_window_inside_the_video():
    seed = tf.constant([3, 4])
    for got in run_both(
        lambda n_, s_: transforms.temporal_sample_indices(n_, 8, 16.0, -1, 1, seed=s_), 100, seed
    ):
        assert got.shape == (8,)
        assert got.min() >= 0 and got.max() <= 99
        assert got[-1] - got[0] in (14, 15)  # linspace(start, start + 15, 8) truncated
        assert np.all(np.diff(got) >= 2)
    # Short video: every index clamped into range, first window starts at 0.
    got = transforms.temporal_sample_indices(5, 8, 16.0, -1, 1, seed=seed).numpy()
    np.testing.assert_array_equal(got, [0, 2, 4, 4, 4, 4, 4, 4])


def test_clip_size_scales_with_fps():
    assert float(transforms.clip_size_in_frames(60.0, 32, 2, 30.0)) == 128.0
    assert float(transforms.clip_size_in_frames(30.0, 32, 2, 30.0)) == 64.0
    assert float(transforms.clip_size_in_frames(0.0, 32, 2, 30.0)) == 64.0  # missing fps


def test_decode_frames_decodes_only_the_gathered_frames():
    parsed = parse_sequence_example(fake_video_record(num_frames=12, height=8, width=10))
    indices = tf.constant([0, 3, 3, 11])
    for got in run_both(transforms.decode_frames, parsed["frames"], indices):
        assert got.shape == (4, 8, 10, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(frame_index_of(got), [0, 3, 3, 11])


def test_resize_short_side_floors_long_side():
    frames = tf.zeros([2, 240, 320, 3], tf.uint8)
    for got in run_both(transforms.resize_short_side, frames, 256):
        assert got.shape == (2, 256, math.floor(320 / 240 * 256), 3)
    tall = tf.zeros([1, 50, 30, 3])
    assert transforms.resize_short_side(tall, 20).shape == (1, 33, 20, 3)


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(0, 255, (2, 12, 16, 3)).astype(np.float32)
    got = transforms.resize_short_side(x, 9).numpy()
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(3, 0, 1, 2), size=(9, 12), mode="bilinear", align_corners=False
    ).permute(1, 2, 3, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_random_short_side_scale_in_range():
    frames = tf.zeros([1, 30, 40, 3])
    for seed in range(5):
        out = transforms.random_short_side_scale(frames, 32, 40, seed=tf.constant([seed, 0]))
        assert 32 <= out.shape[1] <= 40 and out.shape[2] == math.floor(40 / 30 * out.shape[1])
    results = run_both(lambda f, s: transforms.random_short_side_scale(f, 32, 40, s),
                       frames, tf.constant([1, 2]))
    assert results[0].shape == results[1].shape


def test_random_crop_and_flip_same_for_all_frames():
    base = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30, 1)
    frames = np.repeat(np.repeat(base, 3, axis=0), 3, axis=-1)
    for got in run_both(lambda f, s: transforms.random_crop(f, 16, s), frames, tf.constant([7, 1])):
        assert got.shape == (3, 16, 16, 3)
        np.testing.assert_array_equal(got[0], got[2])
        y, x = divmod(int(got[0, 0, 0, 0]), 30)
        assert 0 <= y < 4 and 0 <= x < 14
    flips = {
        bool(transforms.random_flip(frames, tf.constant([s, 0])).numpy()[0, 0, 0, 0] != 0)
        for s in range(16)
    }
    assert flips == {True, False}
    flipped = [transforms.random_flip(frames, tf.constant([s, 0])) for s in range(16)]
    f = next(f for f in flipped if f[0, 0, 0, 0] != 0).numpy()
    np.testing.assert_array_equal(f, frames[:, :, ::-1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):
        transforms.random_crop(frames, 24, tf.constant([0, 0]))


@pytest.mark.parametrize("h,w,idx,y,x", [(256, 340, 0, 0, 0), (256, 340, 1, 0, 42),
                                          (256, 340, 2, 0, 84), (341, 256, 0, 0, 0),
                                          (341, 256, 1, 43, 0), (341, 256, 2, 85, 0)])
def test_uniform_crop_offsets(h, w, idx, y, x):
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    frames = np.stack([yy, xx, yy], -1)[None].astype(np.float32)
    for got in run_both(lambda f, i: transforms.uniform_crop(f, 256, i), frames, idx):
        assert got.shape == (1, 256, 256, 3)
        assert (got[0, 0, 0, 0], got[0, 0, 0, 1]) == (y, x)


def test_normalize():
    for got in run_both(lambda f: transforms.normalize(f, (0.45,) * 3, (0.225,) * 3),
                        np.full([1, 1, 1, 3], 255, np.uint8)):
        np.testing.assert_allclose(got, (1 - 0.45) / 0.225, rtol=1e-6)


@pytest.mark.parametrize("shape", [(3,), (5, 3), (7, 9, 3), (2, 5, 7, 3), (4, 31, 33, 3),
                                   (2, 3, 6, 9, 3), (0, 4, 5, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_normalize_equals_per_channel_broadcast(shape, dtype):
    """The row-tiled constants give bit-for-bit the plain ``x * scale[c] + offset[c]``."""
    mean, std = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
    frames = np.random.default_rng(sum(shape)).uniform(0, 255, shape).astype(dtype)
    scale = np.float32(1.0) / (np.float32(255.0) * np.asarray(std, np.float32))
    offset = -np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    expected = (tf.cast(frames, tf.float32) * scale + offset).numpy()
    for got in run_both(lambda f: transforms.normalize(f, mean, std), frames):
        assert got.shape == shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        transforms.normalize(np.zeros([2, 4, 5, 2], np.float32), mean, std)


@pytest.mark.parametrize("shape", [(4, 6, 3), (3, 5, 7, 3), (2, 3, 4, 9, 3), (2, 4, 5, 1)])
def test_flip_width_reverses_only_the_width_axis(shape):
    frames = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    for data in (frames, frames.astype(np.uint8)):
        for got in run_both(transforms.flip_width, data):
            np.testing.assert_array_equal(got, data[..., ::-1, :])
    ds = tf.data.Dataset.from_tensors(frames).map(transforms.flip_width)
    assert ds.element_spec.shape == shape  # the static shape survives the rank-3 view


def test_slow_indices_match_torch_linspace():
    torch = pytest.importorskip("torch")
    assert transforms.slow_indices(32, 4) == [0, 4, 8, 13, 17, 22, 26, 31]
    for t, alpha in [(32, 8), (64, 4), (16, 4), (8, 2), (96, 8), (40, 4)]:
        ref = torch.linspace(0, t - 1, t // alpha).long().tolist()
        assert transforms.slow_indices(t, alpha) == ref, (t, alpha)


def test_pack_pathways():
    frames = np.arange(32, dtype=np.float32).reshape(32, 1, 1, 1) * np.ones([1, 2, 2, 3], np.float32)
    for got in run_both(lambda f: transforms.pack_pathways(f, 4), frames):
        assert got["fast"].shape == (32, 2, 2, 3)
        np.testing.assert_array_equal(got["slow"][:, 0, 0, 0], [0, 4, 8, 13, 17, 22, 26, 31])
    batched = transforms.pack_pathways(tf.zeros([2, 32, 4, 4, 3]), 8)
    assert batched["slow"].shape == (2, 4, 4, 4, 3)
    single = transforms.pack_pathways(tf.zeros([8, 4, 4, 3]), 4, ("slow",))
    assert list(single) == ["slow"] and single["slow"].shape[0] == 8
    with pytest.raises(ValueError, match="multiple of alpha"):
        transforms.pack_pathways(tf.zeros([30, 4, 4, 3]), 4)
    with pytest.raises(ValueError, match="pathways"):
        transforms.pack_pathways(tf.zeros([8, 4, 4, 3]), 4, ("rgb",))
