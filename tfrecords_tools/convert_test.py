"""Converter: sources, label map, failures, resume after a kill, inspect, Beam fallback."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data import synthetic
from slowfast_tf.data.records import parse_sequence_example
from tfrecords_tools import cli
from tfrecords_tools.convert import LabelMap, convert, plan_shards
from tfrecords_tools.encode import EncodeSettings, encode_video, output_size
from tfrecords_tools.sources import (
    VideoItem,
    read_folder_tree,
    read_kinetics_csv,
    read_list_file,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("flicker_low", "dart_up", "grow")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """12 tiny MP4s (32x32, 12 frames at 30 fps): 4 per class, plus list files."""
    root = tmp_path_factory.mktemp("videos")
    synthetic.generate(str(root), {"train": 4}, size=32, seconds=0.4, seed=1,
                       classes=CLASSES, progress=False)
    return root


def read_ids(pattern):
    ids = []
    for serialized in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
        ids.append(parse_sequence_example(serialized)["video_id"].numpy().decode())
    return ids


def convert_args(videos, out, *extra):
    return ["convert", "--input", str(videos / "train.csv"), "--path_prefix", str(videos),
            "--split", "train", "--output_dir", str(out), "--classes", str(videos / "classes.txt"),
            "--short_side", "0", "--noprogress", *extra]


def test_encode_video_resamples_and_resizes(videos):
    path = str(videos / "videos/train/grow/grow_0000.mp4")
    full = encode_video(path, EncodeSettings(target_fps=30, short_side=0))
    assert (len(full.jpeg_frames), full.fps, full.height, full.width) == (12, 30.0, 32, 32)
    half = encode_video(path, EncodeSettings(target_fps=15, short_side=64))
    assert (len(half.jpeg_frames), half.fps, half.height, half.width) == (6, 15.0, 64, 64)
    double = encode_video(path, EncodeSettings(target_fps=60, short_side=0))
    assert len(double.jpeg_frames) == 24 and double.jpeg_frames[2] == double.jpeg_frames[3]
    # 15 fps keeps source frames 0, 2, 4, ...: frame 1 of the output equals frame 2 of the source.
    decode = lambda b: tf.io.decode_jpeg(b).numpy().astype(float)  # noqa: E731
    np.testing.assert_allclose(decode(double.jpeg_frames[4]), decode(full.jpeg_frames[2]), atol=1)
    assert output_size(240, 320, 256) == (256, 342) and output_size(320, 240, 256) == (342, 256)


def test_convert_failures_manifest_and_label_reuse(videos, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    good = (videos / "videos/train/grow/grow_0000.mp4").read_bytes()
    (bad_dir / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (bad_dir / "garbage.mp4").write_bytes(b"\x00garbage" * 100)
    listing = tmp_path / "val.csv"
    listing.write_text(
        f"{videos}/videos/train/grow/grow_0000.mp4 2\n{bad_dir}/truncated.mp4 1\n"
        f"{bad_dir}/garbage.mp4 0\n{bad_dir}/missing.mp4 0\n{videos}/videos/train/dart_up/dart_up_0000.mp4 7\n"
    )
    out = tmp_path / "out"
    cli.main(convert_args(videos, out, "--num_shards", "2", "--workers", "0"))
    manifest = cli.main(["convert", "--input", str(listing), "--split", "val", "--output_dir", str(out),
                         "--short_side", "0", "--noprogress", "--workers", "0"])
    # val reused OUT/classes.txt written by the train conversion
    assert manifest["classes"] == list(CLASSES)
    assert manifest["splits"]["train"]["videos"] == 12
    assert manifest["splits"]["train"]["per_class"] == {c: 4 for c in CLASSES}
    assert manifest["splits"]["val"]["videos"] == 1
    reasons = {os.path.basename(f["path"]): f["reason"] for f in manifest["failures"]}
    assert set(reasons) == {"truncated.mp4", "garbage.mp4", "missing.mp4", "dart_up_0000.mp4"}
    assert "not found" in reasons["missing.mp4"] and "outside classes.txt" in reasons["dart_up_0000.mp4"]
    failures = (out / "failures.tsv").read_text().splitlines()
    assert failures[0] == "split\tpath\tvideo_id\treason" and len(failures) == 5
    assert any("truncated.mp4" in line for line in failures)
    assert json.loads((out / "manifest.json").read_text())["splits"]["val"]["failures"] == 4
    with pytest.raises(ValueError, match="different settings"):
        cli.main(convert_args(videos, out, "--num_shards", "3", "--workers", "0"))


@pytest.mark.slow
def test_kill_and_resume_loses_nothing(videos, tmp_path):
    out = tmp_path / "out"
    args = convert_args(videos, out, "--num_shards", "6", "--workers", "1")
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrecords_tools", *args, "--delay_per_video", "0.5"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 180
    try:
        while len(list(out.glob("train-*.tfrecord"))) < 2:
            assert proc.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.time() < deadline, "converter made no progress"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the converter and its worker, mid-shard
        proc.wait()
    finished = sorted(out.glob("train-*.tfrecord"))
    assert 2 <= len(finished) < 6
    for shard in finished:  # visible shards are complete
        assert len(read_ids(str(shard))) == 2
    cli.main(args[:-2] + ["--workers", "0"])
    ids = read_ids(str(out / "train-*.tfrecord"))
    expected = [line.split()[0][len("videos/"):-len(".mp4")]
                for line in (videos / "train.csv").read_text().split("\n") if line]
    assert sorted(ids) == sorted("videos/" + e for e in expected)  # each video exactly once
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    assert len(list(out.glob("train-*-of-00006.tfrecord"))) == 6


def test_sources(videos, tmp_path):
    # Kinetics: one clip under a per-label folder, one flat, one missing.
    root = tmp_path / "k400"
    (root / "dancing ballet").mkdir(parents=True)
    clip = (videos / "videos/train/grow/grow_0000.mp4").read_bytes()
    (root / "dancing ballet" / "abc_000010_000020.mp4").write_bytes(clip)
    (root / "xyz_000001_000011.mkv").write_bytes(clip)
    csv = tmp_path / "k400.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "dancing ballet,abc,10,20,train\nsinging,xyz,1,11,train\nsinging,nope,0,10,train\n"
                   "singing,vvv,0,10,val\n")
    items = read_kinetics_csv(str(csv), str(root), split="train")
    assert [i.video_id for i in items] == ["abc_000010_000020", "xyz_000001_000011", "nope_000000_000010"]
    assert items[0].path.endswith("dancing ballet/abc_000010_000020.mp4") and items[0].labels == ("dancing ballet",)
    assert items[1].path.endswith("xyz_000001_000011.mkv") and not items[1].error
    assert "not found" in items[2].error
    assert cli.detect_format(str(csv)) == "kinetics"
    # PySlowFast list rules: 1 field -> label 0, 3 fields -> last, comma = multi-label, prefix.
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4\nb.mp4 x 3\nc.mp4 1,4\n\n")
    items = read_list_file(str(listing), "val", path_prefix="/data")
    assert [(i.path, i.labels) for i in items] == [("/data/a.mp4", (0,)), ("/data/b.mp4", (3,)),
                                                   ("/data/c.mp4", (1, 4))]
    assert cli.detect_format(str(listing)) == "list"
    (tmp_path / "bad.txt").write_text("a.mp4 cat\n")
    with pytest.raises(ValueError, match="integers"):
        read_list_file(str(tmp_path / "bad.txt"), "train")
    # Folder tree.
    items = read_folder_tree(str(videos / "videos/train"), "train")
    assert len(items) == 12 and {i.labels[0] for i in items} == set(CLASSES)
    assert cli.detect_format(str(videos / "videos/train")) == "folder"


def test_label_map_and_plan(tmp_path):
    items = [VideoItem("p", f"v{i}", "train", (f"c{i % 3}",)) for i in range(10)]
    label_map = LabelMap.resolve(str(tmp_path), items)
    assert label_map.classes == ["c0", "c1", "c2"]
    assert (tmp_path / "classes.txt").read_text() == "c0\nc1\nc2\n"
    assert label_map.encode(["c2", 0]) == ([2, 0], ["c2", "c0"])
    with pytest.raises(ValueError, match="not in classes"):
        label_map.encode(["c9"])
    other = tmp_path / "other.txt"
    other.write_text("x\ny\n")
    with pytest.raises(ValueError, match="different label map"):
        LabelMap.resolve(str(tmp_path), items, str(other))
    ints = [VideoItem("p", "a", "t", (4,))]
    assert LabelMap.resolve(str(tmp_path / "new"), ints).classes[-1] == "4"
    plan = plan_shards(items, num_shards=3, seed=0)
    assert [len(s.items) for s in plan] == [4, 3, 3]
    assert plan_shards(items, num_shards=3, seed=0)[1].items == plan[1].items
    assert sorted(i.video_id for s in plan for i in s.items) == sorted(i.video_id for i in items)


def test_inspect_prints_and_writes_sheet(videos, tmp_path, capsys):
    out = tmp_path / "out"
    convert([VideoItem(str(p), p.stem, "train", (p.parent.name,))
             for p in sorted((videos / "videos/train").rglob("*.mp4"))[:3]],
            str(out), EncodeSettings(short_side=0), workers=0, progress=False)
    summary = cli.main(["inspect", str(out / "train-*.tfrecord"), "--num_records", "2",
                        "--frames", "3", "--sheet", str(tmp_path / "sheet.png")])
    assert summary["records"] == 3 and summary["frames"]["max"] == 12
    assert summary["shown"][0]["shape"] == [12, 32, 32, 3]
    sheet = tf.io.decode_png((tmp_path / "sheet.png").read_bytes()).numpy()
    assert sheet.shape[0] > 2 * 96 and sheet.shape[1] > 3 * 96
    printed = capsys.readouterr().out
    assert "records: 3" in printed and "contact sheet" in printed


def test_beam_runner_missing_dependency(videos, tmp_path):
    try:
        import apache_beam  # noqa: F401

        pytest.skip("apache-beam is installed")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="pip install"):
        cli.main(convert_args(videos, tmp_path / "out", "--runner", "beam"))
