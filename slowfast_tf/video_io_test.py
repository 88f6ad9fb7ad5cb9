"""`video_io`: decoding synthetic MP4s, resampling, seeking, the resize rule and read errors."""

import numpy as np
import pytest

from slowfast_tf import video_io
from slowfast_tf.data import synthetic


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A 1 s 64x64 square video and a 1 s 48x64 (4:3 landscape) one at 30 fps, with their frames."""
    root = tmp_path_factory.mktemp("video_io")
    square = synthetic.render_video(4, np.random.default_rng(0), size=64, num_frames=30)
    wide = synthetic.render_video(3, np.random.default_rng(1), size=64, num_frames=30)[:, 8:56]
    paths = {}
    for name, frames in (("square", square), ("wide", wide)):
        paths[name] = str(root / f"{name}.mp4")
        synthetic.write_mp4(paths[name], frames, fps=30)
    return paths, {"square": square, "wide": wide}


def test_decodes_the_rendered_frames(videos):
    paths, rendered = videos
    frames, fps = video_io.read_frames(paths["square"])
    assert frames.shape == (30, 64, 64, 3) and frames.dtype == np.uint8 and fps == 30.0
    # Codec error only (4:2:0 chroma on a noisy texture), and every frame in its place.
    error = np.abs(frames[:, None].astype(float) - rendered["square"][None]).mean(axis=(2, 3, 4))
    assert np.diag(error).max() < 8.0, np.diag(error)
    np.testing.assert_array_equal(error.argmin(axis=1), np.arange(30))
    info = video_io.probe(paths["wide"])
    assert (info.fps, info.num_frames, info.height, info.width) == (30.0, 30, 48, 64)
    assert info.duration == pytest.approx(1.0, abs=0.04)


def test_resampling_is_sample_and_hold(videos):
    path = videos[0]["square"]
    full = list(video_io.iter_frames(path))
    assert [f.index for f in full] == list(range(30)) and full[-1].time == pytest.approx(29 / 30)
    half = list(video_io.iter_frames(path, target_fps=15))
    assert [f.source_index for f in half] == list(range(1, 31, 2)) and half[0].fps == 15
    double = list(video_io.iter_frames(path, target_fps=60))
    assert len(double) == 60 and double[2].frame is double[3].frame  # held, resized once
    np.testing.assert_array_equal(double[4].rgb(), full[2].rgb())
    assert len(list(video_io.iter_frames(path, max_seconds=0.5))) == 15


def test_seek_starts_at_the_requested_frame(videos):
    path = videos[0]["square"]
    full, _ = video_io.read_frames(path)
    after = list(video_io.iter_frames(path, start_seconds=0.5, limits=video_io.NO_LIMITS))
    assert [f.index for f in after] == list(range(15, 30))
    np.testing.assert_array_equal(np.stack([f.rgb() for f in after]), full[15:])


def test_one_resize_rule(videos):
    # Short side to the target, long side rounded to even (round() alone would give 341 and 53).
    assert video_io.output_size(240, 320, 256) == (256, 342)
    assert video_io.output_size(320, 240, 256) == (342, 256)
    assert video_io.output_size(48, 64, 40) == (40, 54)
    assert video_io.output_size(47, 63, 0) == (46, 62)
    frames, _ = video_io.read_frames(videos[0]["wide"], short_side=40)
    assert frames.shape == (30, 40, 54, 3)
    # AREA: a box average, so a flat region stays flat and the mean brightness is kept.
    original, _ = video_io.read_frames(videos[0]["wide"])
    assert abs(frames.astype(float).mean() - original.astype(float).mean()) < 1.0
    same, _ = video_io.read_frames(videos[0]["wide"], short_side=48)
    np.testing.assert_array_equal(same, original)  # already at size: no resampling at all


def test_unreadable_files_are_one_line_video_errors(tmp_path, videos):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    data = open(videos[0]["square"], "rb").read()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[:200])
    for path, reason in ((tmp_path / "missing.mp4", "no such file"), (garbage, "InvalidData"),
                         (truncated, "")):
        with pytest.raises(video_io.VideoError) as info:
            video_io.read_frames(str(path))
        message = str(info.value)
        assert message.startswith(f"cannot read video {path}") and reason in message
        assert "\n" not in message
    with pytest.raises(ValueError, match="max_frames"):
        video_io.read_frames(videos[0]["square"], max_frames=0)
