"""Converter hardening: bounded work per video, plan-checked reruns, escaped failures.tsv,
non-UTF-8 names, and one-line errors with exit status 2."""

import csv
import fractions
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data import synthetic
from slowfast_tf.data.records import parse_sequence_example
from tfrecords_tools import cli
from tfrecords_tools.encode import EncodeSettings, VideoRefused, encode_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("grow", "shrink")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """6 tiny MP4s (32x32, 12 frames at 30 fps), 3 per class, and ``train.csv``."""
    root = tmp_path_factory.mktemp("videos")
    synthetic.generate(str(root), {"train": 3}, size=32, seconds=0.4, seed=2,
                       classes=CLASSES, progress=False)
    return root


def write_video_with_timestamps(path, seconds, size=32):
    """A tiny MPEG-4 file whose frames carry the given presentation times (any gaps)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 30)
        for i, t in enumerate(seconds):
            frame = av.VideoFrame.from_ndarray(
                np.full((size, size, 3), 60 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 30)), fractions.Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_ids(pattern):
    files = sorted(tf.io.gfile.glob(pattern))
    return [parse_sequence_example(r)["video_id"].numpy().decode()
            for r in tf.data.TFRecordDataset(files)]


def run_cli(capsys, *argv):
    """`python -m tfrecords_tools` in process: (exit status, stderr lines)."""
    status = cli.run(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


def test_timestamp_gap_frames_and_duration_are_bounded(tmp_path):
    gap = tmp_path / "gap.mp4"
    write_video_with_timestamps(gap, [0, 1 / 30, 2 / 30, 10_000])
    assert gap.stat().st_size < 2000  # ~1 KB that would expand to 300,000+ frames
    with pytest.raises(VideoRefused, match="timestamp gap of 9999.9 s before source frame 4"):
        encode_video(str(gap), EncodeSettings(short_side=0))
    steady = tmp_path / "steady.mp4"
    write_video_with_timestamps(steady, [i / 30 for i in range(12)])
    assert len(encode_video(str(steady), EncodeSettings(short_side=0)).jpeg_frames) == 12
    with pytest.raises(VideoRefused, match="more than 5 output frames"):
        encode_video(str(steady), EncodeSettings(short_side=0, max_frames=5))
    with pytest.raises(VideoRefused, match="longer than the limit of 0.2 s"):
        encode_video(str(steady), EncodeSettings(short_side=0, max_duration=0.2))
    # --max_seconds truncates first, so the bound does not refuse it.
    kept = encode_video(str(steady), EncodeSettings(short_side=0, max_duration=0.2,
                                                    max_seconds=0.2))
    assert len(kept.jpeg_frames) == 6
    # A frame rate that holds the last frame for hours is refused too.
    lone = tmp_path / "lone.mp4"
    write_video_with_timestamps(lone, [0, 5000])
    with pytest.raises(VideoRefused, match="timestamp gap"):
        encode_video(str(lone), EncodeSettings(short_side=0))
    # With the limits lifted on purpose the 5000 s gap is honoured (sample-and-hold).
    wide = EncodeSettings(short_side=0, target_fps=0.01, max_gap=0, max_duration=0)
    assert len(encode_video(str(lone), wide).jpeg_frames) >= 50


def test_refused_video_is_listed_and_the_others_convert(videos, tmp_path, capsys):
    gap = tmp_path / "gap.mp4"
    write_video_with_timestamps(gap, [0, 1 / 30, 2 / 30, 10_000])
    listing = tmp_path / "list.txt"
    good = videos / "videos/train/grow/grow_0000.mp4"
    listing.write_text(f"{good} 0\n{gap} 1\n")
    out = tmp_path / "out"
    status, err = run_cli(capsys, "convert", "--input", str(listing), "--output_dir", str(out),
                          "--short_side", "0", "--noprogress", "--workers", "0")
    assert status == 0, err
    with open(out / "failures.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert len(rows) == 2 and rows[1][1] == str(gap)
    assert rows[1][3].startswith("VideoRefused: timestamp gap of 9999.9 s")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["videos"] == 1
    assert manifest["splits"]["train"]["frames"] == 12
    # The defaults the README names.
    assert manifest["settings"]["max_gap"] == 10.0 and manifest["settings"]["max_frames"] == 54000
    assert manifest["settings"]["max_duration"] == 1800.0


def test_rerun_with_a_changed_input_list_is_refused_or_redone(videos, tmp_path, capsys):
    lines = (videos / "train.csv").read_text().split()
    entries = [f"{lines[i]} {lines[i + 1]}" for i in range(0, len(lines), 2)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(entries) + "\n")
    out = tmp_path / "out"
    args = ["convert", "--input", str(listing), "--path_prefix", str(videos), "--output_dir", str(out),
            "--short_side", "0", "--noprogress", "--workers", "0", "--num_shards", "3"]
    assert run_cli(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("train-*.tfrecord")}
    # One video removed and one relabelled: same shard count, different plan.
    changed = entries[2:] + [entries[1].rsplit(" ", 1)[0] + " 1"]
    listing.write_text("\n".join(changed) + "\n")
    status, err = run_cli(capsys, *args)
    assert status == 2 and len(err) == 1, err
    assert "different input list" in err[0] and "--overwrite" in err[0]
    assert {p.name: p.read_bytes() for p in out.glob("train-*.tfrecord")} == before
    # Half-finished old plan (a shard deleted): still refused, never mixed.
    os.remove(out / sorted(before)[0])
    assert run_cli(capsys, *args)[0] == 2
    assert run_cli(capsys, *args, "--overwrite")[0] == 0
    ids = read_ids(str(out / "train-*.tfrecord"))
    assert sorted(ids) == sorted(e.split()[0][: -len(".mp4")] for e in changed)  # each once
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["per_class"] == {"0": 1, "1": 4}
    # The same plan again resumes (nothing to do) without --overwrite.
    assert run_cli(capsys, *args)[0] == 0
    # A finished shard whose meta records another plan (e.g. copied in from elsewhere) is
    # caught shard by shard.
    meta_path = sorted((out / "_meta").glob("train-*.json"))[0]
    meta = json.loads(meta_path.read_text())
    meta["plan"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    status, err = run_cli(capsys, *args)
    assert status == 2 and f"shard {meta_path.stem} holds other videos than planned" in err[0]


def test_failures_tsv_quotes_tabs_and_newlines_and_non_utf8_names_fail_alone(videos, tmp_path):
    root = tmp_path / "tree"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for src in sorted((videos / "videos/train" / name).glob("*.mp4"))[:2]:
            (root / name / src.name).write_bytes(src.read_bytes())
    forged = "evil\tforged\nval\tfake.mp4\tid\treason.mp4"
    (root / "grow" / forged).write_bytes(b"not a video")
    good = (videos / "videos/train/grow/grow_0000.mp4").read_bytes()
    os.makedirs(os.path.join(os.fsencode(root), b"shrink"), exist_ok=True)
    with open(os.path.join(os.fsencode(root), b"shrink", b"caf\xe9.mp4"), "wb") as f:
        f.write(good)
    out = tmp_path / "out"
    manifest = cli.main(["convert", "--input", str(root), "--split", "train", "--output_dir", str(out),
                         "--short_side", "0", "--noprogress", "--workers", "0"])
    assert manifest["splits"]["train"]["videos"] == 4
    with open(out / "failures.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["split", "path", "video_id", "reason"] and len(rows) == 3
    by_name = {os.path.basename(r[1]): r for r in rows[1:]}
    assert by_name[forged][0] == "train" and by_name[forged][2] == "grow/" + forged[:-4]
    assert by_name["caf\\xe9.mp4"][3] == f"file name is not valid UTF-8: {root}/shrink/caf\\xe9.mp4"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_bad_inputs_are_one_line_errors_with_exit_2(videos, tmp_path, capsys):
    def fails(expected, *argv):
        status, err = run_cli(capsys, *argv)
        assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert expected in err[0], err
        return err[0]

    out = ["--output_dir", str(tmp_path / "out"), "--noprogress", "--workers", "0"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 1\nb.mp4 x y z\n")
    fails(f"{bad}:2: expected 'path label'", "convert", "--input", str(bad), *out)
    bad.write_text("a.mp4 1\n\nc.mp4 cat\n")
    fails(f"{bad}:3: labels must be integers", "convert", "--input", str(bad), *out)
    kinetics = tmp_path / "k.csv"
    kinetics.write_text("youtube_id,time_start,time_end,split,label\nabc,0,10,train,x\n"
                        "def,zero,10,train,x\n")
    fails(f"{kinetics}:3: time_start and time_end must be numbers",
          "convert", "--input", str(kinetics), *out)
    kinetics.write_text("youtube_id,time_start,time_end,split,label\nabc,0\n")
    fails(f"{kinetics}:2: expected 5 comma-separated fields", "convert", "--input",
          str(kinetics), *out)
    kinetics.write_bytes(b"youtube_id,time_start,time_end\n\xff\xfe,0,10\n")
    fails("not UTF-8 text", "convert", "--input", str(kinetics), *out)
    fails("--input does not exist", "convert", "--input", str(tmp_path / "nope.txt"), *out)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    fails(f"--input lists no videos (list format). Received: {empty}",
          "convert", "--input", str(empty), *out)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    fails("--output_dir cannot be written", "convert", "--input", str(videos / "train.csv"),
          "--path_prefix", str(videos), "--output_dir", str(blocker / "sub"), "--noprogress")
    fails("No files match", "inspect", str(tmp_path / "none-*.tfrecord"))
    # Flag errors are the same one-line exit-2 errors (absl's messages).
    fails("Unknown command line flag 'bogus'", "convert", "--input", str(bad), *out, "--bogus=1")
    fails("Flag --output_dir must have a value other than None", "convert", "--input", str(bad))
    fails("flag --short_side=x: invalid literal for int()", "convert", "--input", str(bad), *out,
          "--short_side=x")
    fails("the first argument must be one of convert, convert-ava, inspect", "export")
    fails("inspect takes one shard pattern", "inspect")


def test_deprecated_spellings_warn_and_still_convert(videos, tmp_path, capsys):
    out = tmp_path / "old"
    status, err = run_cli(capsys, "convert", "--input", str(videos / "train.csv"),
                          "--path-prefix", str(videos), "--out", str(out), "--short-side", "0",
                          "--no-progress", "--workers", "0", "--num-shards", "1")
    assert status == 0, err
    for old, new in [("--path-prefix", "--path_prefix"), ("--out", "--output_dir"),
                     ("--short-side", "--short_side"), ("--no-progress", "--noprogress"),
                     ("--num-shards", "--num_shards")]:
        assert any(f"warning: {old} is deprecated, use {new}" in line for line in err), err
    assert len(err) == 5 and sorted(p.name for p in out.glob("train-*.tfrecord")) == [
        "train-00000-of-00001.tfrecord"
    ]


def test_inspect_names_a_corrupt_shard(videos, tmp_path, capsys):
    out = tmp_path / "out"
    cli.main(["convert", "--input", str(videos / "train.csv"), "--path_prefix", str(videos),
              "--output_dir", str(out), "--short_side", "0", "--noprogress", "--workers", "0",
              "--num_shards", "2"])
    shards = sorted(out.glob("train-*.tfrecord"))
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    status, err = run_cli(capsys, "inspect", str(out / "train-*.tfrecord"))
    assert status == 2 and len(err) == 1, err
    assert f"{shards[1]}: corrupt TFRecord shard at record 1 (1 read before it)" in err[0]
    garbage = out / "train-garbage.tfrecord"
    garbage.write_bytes(b"\x00" * 64)
    status, err = run_cli(capsys, "inspect", str(garbage))
    assert status == 2 and f"{garbage}: corrupt TFRecord shard at record 0" in err[0], err


def test_module_entry_point_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools", "convert", "--input", str(tmp_path / "x.txt"),
         "--output_dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --input does not exist")
