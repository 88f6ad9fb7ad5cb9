"""``--runner beam``: Beam's local runner gives the local runner's records; options are checked.

The pipeline tests need apache-beam (``pip install -e '.[beam]'``) and are skipped without it;
the merge and ``ram://`` tests do not.
"""

import json
import os

import pytest
import tensorflow as tf

from slowfast_tf.data import synthetic
from slowfast_tf.data.records import parse_sequence_example
from tfrecords_tools import cli
from tfrecords_tools.beam_runner import merge_outputs
from tfrecords_tools.encode import EncodeSettings

CLASSES = ("flicker_low", "dart_up", "grow")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """9 tiny MP4s (32x32, 12 frames) plus one missing entry in the list file."""
    root = tmp_path_factory.mktemp("beam_videos")
    synthetic.generate(str(root), {"train": 3}, size=32, seconds=0.4, seed=2,
                       classes=CLASSES, progress=False)
    with open(root / "train.csv", "a") as f:
        f.write("videos/train/grow/missing.mp4 2\n")
    return root


def _args(videos, out, *extra):
    return ["convert", "--input", str(videos / "train.csv"), "--path_prefix", str(videos),
            "--split", "train", "--output_dir", str(out), "--classes", str(videos / "classes.txt"),
            "--short_side", "0", "--noprogress", "--num_shards", "2", "--workers", "0", *extra]


def _records(out):
    """{video_id: (labels, num_frames, first JPEG bytes)} over every shard of `out`."""
    records = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(str(out), "train-*.tfrecord"))):
        for serialized in tf.data.TFRecordDataset(path):
            rec = parse_sequence_example(serialized)
            labels = tuple(rec["label_index"].numpy().tolist())
            frames = rec["frames"].numpy()
            records[rec["video_id"].numpy().decode()] = (labels, len(frames), frames[0])
    return records


@pytest.fixture(scope="module")
def local_out(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, cli.main(_args(videos, out))


def test_beam_direct_runner_matches_local_runner(videos, local_out, tmp_path):
    pytest.importorskip("apache_beam")
    local_dir, local = local_out
    beam = cli.main(_args(videos, tmp_path / "beam", "--runner", "beam", "--",
                          "--runner=DirectRunner", "--direct_num_workers=1"))
    want, got = _records(local_dir), _records(tmp_path / "beam")
    assert len(want) == 9 and got == want  # same videos, labels, frame counts and JPEG bytes
    assert len(tf.io.gfile.glob(str(tmp_path / "beam" / "train-*-of-00002.tfrecord"))) == 2
    # Failures and the manifest are merged into the local runner's files and layout.
    for key in ("videos", "failures", "frames", "per_class"):
        assert beam["splits"]["train"][key] == local["splits"]["train"][key], key
    assert [f["video_id"] for f in beam["failures"]] == ["videos/train/grow/missing"]
    assert json.loads((tmp_path / "beam" / "manifest.json").read_text()) == beam
    tsv = (tmp_path / "beam" / "failures.tsv").read_text().splitlines()
    assert tsv[0] == "split\tpath\tvideo_id\treason" and tsv[1].startswith("train\t")
    assert tsv[1].split("\t")[2] == "videos/train/grow/missing"


def test_beam_runner_options_checked_without_network(videos, tmp_path, capsys):
    pytest.importorskip("apache_beam")
    out = str(tmp_path / "never")
    plan = cli.main(_args(videos, "gs://bucket/k400", "--runner", "beam", "--dry_run", "--",
                          "--runner=DataflowRunner", "--project=p", "--region=europe-west4",
                          "--temp_location=gs://bucket/tmp", "--setup_file=./setup.py"))
    assert plan["runner"] == "DataflowRunner" and plan["videos"] == {"train": 10}
    assert plan["options"]["temp_location"] == "gs://bucket/tmp"
    assert json.loads(capsys.readouterr().out)["runner"] == "DataflowRunner"
    for extra in (["--runner=FlinkRunner", "--flink_master=localhost:8081"],
                  ["--runner=SparkRunner", "--spark_master_url=spark://localhost:7077"]):
        assert cli.main(_args(videos, out, "--runner", "beam", "--dry_run", "--", *extra))[
            "runner"] == extra[0].split("=")[1]
    bad = {
        "needs --flink_master": ["--runner=FlinkRunner"],
        "needs --spark_master_url": ["--runner=SparkRunner"],
        "needs --project, --region, --temp_location": ["--runner=DataflowRunner"],
        "gs:// --temp_location": ["--runner=DataflowRunner", "--project=p", "--region=r",
                                  "--temp_location=/tmp/x"],
        "must be one of": ["--runner=NoSuchRunner"],
    }
    for match, extra in bad.items():
        with pytest.raises(ValueError, match=match):
            cli.main(_args(videos, out, "--runner", "beam", "--dry_run", "--", *extra))
    assert not os.path.exists(out)  # a dry run writes nothing


def test_merge_outputs_on_a_tf_filesystem():
    # ram:// stands in for gs://: the merge reads and writes only through tf.io.gfile.
    out = "ram://beam_merge_test"
    tf.io.gfile.makedirs(out)
    with tf.io.gfile.GFile(f"{out}/videos-val-00000-of-00001.jsonl", "w") as f:
        f.write(json.dumps({"video_id": "a", "labels": ["grow"], "num_frames": 12}) + "\n")
        f.write(json.dumps({"video_id": "b", "labels": ["grow", "dart_up"], "num_frames": 6}) + "\n")
    with tf.io.gfile.GFile(f"{out}/failures-val-00000-of-00001.jsonl", "w") as f:
        f.write(json.dumps({"path": "x\ty.mp4", "video_id": "c", "reason": "missing"}) + "\n")
    with tf.io.gfile.GFile(f"{out}/val-00000-of-00001.tfrecord", "wb") as f:
        f.write(b"")
    manifest = merge_outputs(out, EncodeSettings(), list(CLASSES))
    assert manifest["splits"]["val"] == {
        "videos": 2, "failures": 1, "shards": 1, "frames": 18,
        "per_class": {"dart_up": 1, "grow": 2},
    }  # fmt: skip
    with tf.io.gfile.GFile(f"{out}/manifest.json") as f:
        assert json.load(f)["failures"][0]["video_id"] == "c"
    with tf.io.gfile.GFile(f"{out}/failures.tsv") as f:
        rows = f.read().splitlines()
    assert rows[1] == 'val\t"x\ty.mp4"\tc\tmissing'  # a tab in a name is quoted, not a new column


def test_records_read_from_a_tf_filesystem(local_out):
    # Shards copied to ram:// (a gs:// stand-in) read back through the tf.data pipeline.
    from slowfast_tf.data import build_dataset, get_data_config

    tf.io.gfile.makedirs("ram://shards")
    for path in tf.io.gfile.glob(str(local_out[0] / "train-*.tfrecord")):
        tf.io.gfile.copy(path, "ram://shards/" + os.path.basename(path), overwrite=True)
    config = get_data_config("slowfast_r50_8x8", num_classes=3).replace(
        num_frames=8, sampling_rate=1, train_crop=32, test_crop=32, train_jitter_scales=(32, 40),
        num_clips=1, num_crops=1,
    )
    ds = build_dataset("ram://shards/train-*.tfrecord", config, "val", batch_size=3)
    labels = sorted(int(x) for batch in ds for x in batch[1].numpy())
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
