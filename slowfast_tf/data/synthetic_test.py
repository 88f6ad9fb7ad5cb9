import json

import av
import numpy as np
import pytest

from slowfast_tf.data import synthetic


def test_render_is_deterministic_and_classes_differ_in_time_only():
    a = synthetic.render_video(0, np.random.default_rng(5), size=32, num_frames=30)
    b = synthetic.render_video(0, np.random.default_rng(5), size=32, num_frames=30)
    assert a.shape == (30, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    # flicker: object brightness oscillates; dart: the object moves (frame differences are large)
    for label in range(len(synthetic.CLASSES)):
        frames = synthetic.render_video(label, np.random.default_rng(label), 32, 30).astype(float)
        assert np.abs(np.diff(frames, axis=0)).mean() > 0.5, synthetic.CLASSES[label]
    with pytest.raises(ValueError, match="label"):
        synthetic.render_video(6, np.random.default_rng(0))


def test_dart_direction_is_aliased_at_the_slow_stride():
    # Row of the object per frame; signed steps on the torus. Over many dart_up videos the fast
    # stride (2 frames) always shows "up", the slow stride (~10 frames) is a coin flip.
    fast_up, slow_up = [], []
    for i in range(24):
        frames = synthetic.render_video(2, np.random.default_rng([9, i]), 64, 60).astype(float)
        rows = frames.mean(axis=(2, 3))
        centre = np.argmax(rows - rows.mean(0), axis=1)
        fast = (np.diff(centre[0:32:2]) + 32) % 64 - 32
        slow = (np.diff(centre[[0, 10, 21, 31]]) + 32) % 64 - 32
        fast_up.append(np.mean(fast < 0))
        slow_up.append(np.mean(slow < 0))
    assert np.mean(fast_up) > 0.95
    assert 0.25 < np.mean(slow_up) < 0.75


def _fast_and_slow_indices(start):
    # The synthetic_slowfast preset's sampling at 30 fps: 16 fast frames over a 32-frame window,
    # truncated linspace (transforms.temporal_sample_indices), and the slow pathway's 4 of them.
    fast = start + np.floor(np.linspace(0, 31, 16)).astype(int)
    return fast, fast[np.floor(np.linspace(0, 15, 4)).astype(int)]


def _best_threshold_accuracy(a, b):
    values = np.concatenate([a, b])
    return max(max(np.mean(a > t) + np.mean(b <= t), np.mean(a <= t) + np.mean(b > t)) / 2
               for t in values)


def test_flicker_rate_is_aliased_at_the_slow_stride():
    # Lag-1 autocorrelation of the frame brightness: at the fast stride flicker_low nearly
    # alternates (< 0) and flicker_high drifts slowly (> 0), so one threshold separates all clips;
    # at the slow stride no threshold does much better than a coin flip.
    fast_corr, slow_corr = {0: [], 1: []}, {0: [], 1: []}
    for label in (0, 1):
        for i in range(30):
            frames = synthetic.render_video(label, np.random.default_rng([7, label, i]), 32, 60)
            brightness = frames.astype(float).mean(axis=(1, 2, 3))
            for start in (0, 14, 28):
                for indices, out in zip(_fast_and_slow_indices(start), (fast_corr, slow_corr)):
                    x = brightness[indices] - brightness[indices].mean()
                    out[label].append(np.sum(x[1:] * x[:-1]) / np.sum(x * x))
    assert max(fast_corr[0]) < 0 < min(fast_corr[1])
    assert _best_threshold_accuracy(np.array(slow_corr[0]), np.array(slow_corr[1])) < 0.65


def test_generate_writes_videos_and_lists(tmp_path):
    out = tmp_path / "synth"
    info = synthetic.main([
        "--output_dir", str(out), "--num_train", "2", "--num_val", "1", "--num_test", "0",
        "--size", "32", "--seconds", "0.3", "--seed", "3",
    ])
    assert info["counts"] == {"train": 12, "val": 6}
    lines = (out / "train.csv").read_text().split("\n")
    assert lines[0] == "videos/train/flicker_low/flicker_low_0000.mp4 0"
    assert (out / "classes.txt").read_text().split() == list(synthetic.CLASSES)
    assert json.loads((out / "synthetic.json").read_text())["num_frames"] == 9
    with av.open(str(out / "videos/train/grow/grow_0001.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (32, 32, 3)
    # Same seed, same bytes, for every file (the encoder gets exact integer YUV frames and runs
    # on one thread; see write_mp4).
    again = tmp_path / "again"
    synthetic.generate(str(again), {"train": 2}, size=32, seconds=0.3, seed=3, progress=False)
    names = sorted(p.relative_to(out) for p in (out / "videos/train").rglob("*.mp4"))
    assert len(names) == 12
    differing = [str(n) for n in names if (out / n).read_bytes() != (again / n).read_bytes()]
    assert differing == []
    assert not [p for p in out.rglob(".tmp-*")]


def test_rgb_to_yuv420p_is_exact_bt601():
    colours = {(255, 255, 255): (235, 128, 128), (0, 0, 0): (16, 128, 128),
               (255, 0, 0): (81, 90, 240), (0, 0, 255): (41, 240, 110)}
    for rgb, (y, u, v) in colours.items():
        yuv = synthetic.rgb_to_yuv420p(np.full((4, 6, 3), rgb, np.uint8))
        assert yuv.shape == (6, 6) and yuv.dtype == np.uint8
        np.testing.assert_array_equal(yuv[:4], y, err_msg=str(rgb))
        np.testing.assert_array_equal(yuv[4:].ravel()[:6], u, err_msg=str(rgb))
        np.testing.assert_array_equal(yuv[4:].ravel()[6:], v, err_msg=str(rgb))
    # Chroma filters a black/white checkerboard to grey.
    board = np.zeros((2, 2, 3), np.uint8)
    board[0, 0] = board[1, 1] = 255
    assert synthetic.rgb_to_yuv420p(board).ravel().tolist() == [235, 16, 16, 235, 128, 128]
    # Within 1 of FFmpeg's own conversion (which is not used: it is not reproducible).
    import av

    frame = synthetic.render_video(4, np.random.default_rng(1), 32, 1)[0]
    ffmpeg = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
    diff = synthetic.rgb_to_yuv420p(frame).astype(int) - ffmpeg.to_ndarray().astype(int)
    assert np.abs(diff).max() <= 1
