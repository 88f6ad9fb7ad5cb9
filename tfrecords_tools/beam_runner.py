"""``--runner beam``: the same per-video function (`encode_item`) as a multi-machine Beam job.

apache-beam is an optional extra (``pip install "slowfast_tf[beam]"``) and is imported lazily.
Beam writes shards through its own temp-and-finalize file sinks, so a failed job leaves no partial
shards; unlike the local runner it does not resume shard by shard (Beam retries failed bundles
instead). Pass Beam pipeline options after ``--`` on the command line, e.g.
``-- --runner=DataflowRunner --project=... --temp_location=gs://...``.

After the pipeline, `merge_outputs` folds the per-split ``videos-*.jsonl`` and
``failures-*.jsonl`` into the same ``manifest.json`` and ``failures.tsv`` the local runner writes
(through ``tf.io.gfile``, so ``gs://`` outputs work). ``beam_runner_test.py`` runs the conversion
with Beam's local runner and checks it gives the local runner's records; it is skipped when
apache-beam is not installed (it pins protobuf < 7, see the README).

Runners (options after ``--``; ``check_pipeline_options`` validates them without network and
``convert --runner beam --dry_run`` prints the plan without running):

- ``DirectRunner`` / ``PrismRunner``: local (default).
- ``DataflowRunner``: ``--project --region --temp_location=gs://... [--staging_location]
  [--setup_file=./setup.py or --requirements_file]`` (workers need this package installed).
- ``FlinkRunner``: ``--flink_master=host:8081 [--environment_type=DOCKER|PROCESS|LOOPBACK]``.
- ``SparkRunner``: ``--spark_master_url=spark://host:7077 [--environment_type=...]``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence

from tfrecords_tools.convert import write_failures_tsv
from tfrecords_tools.encode import EncodeSettings, encode_item
from tfrecords_tools.sources import VideoItem


def import_beam():
    """Imports apache_beam or raises a RuntimeError saying how to install it."""
    try:
        import apache_beam as beam  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            "--runner beam needs apache-beam, an optional extra that is not installed. "
            "Install it with: pip install 'slowfast_tf[beam]'  (or: pip install apache-beam)"
        ) from e
    return beam


def _to_record(result: dict, classes: list[str]) -> bytes:
    from slowfast_tf.data.records import make_sequence_example

    index = {name: i for i, name in enumerate(classes)}
    indices = [lab if isinstance(lab, int) else index[lab] for lab in result["labels"]]
    names = [classes[i] for i in indices]
    video = result["video"]
    return make_sequence_example(
        video.jpeg_frames, indices, names, result["video_id"], video.fps, video.height, video.width
    ).SerializeToString()


def run_beam(
    items: Sequence[VideoItem],
    out_dir: str,
    settings: EncodeSettings,
    classes: list[str],
    num_shards: int,
    pipeline_args: Sequence[str] = (),
) -> dict:
    """Runs the conversion as a Beam pipeline (one branch per split), then `merge_outputs`.

    Writes ``{split}-SSSSS-of-NNNNN.tfrecord`` shards, ``failures-{split}*.jsonl`` and
    ``videos-{split}*.jsonl`` under `out_dir`, then ``manifest.json`` and ``failures.tsv``.

    Returns:
        The manifest dict.
    """
    beam = import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    known = set(classes)
    by_split: dict[str, list[dict]] = {}
    for item in items:
        error = item.error or next(
            (f"label {lab!r} not in classes.txt" for lab in item.labels
             if not isinstance(lab, int) and lab not in known), "")
        by_split.setdefault(item.split, []).append({
            "path": item.path, "video_id": item.video_id, "split": item.split,
            "labels": list(item.labels), "error": error,
        })
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        for split, split_items in sorted(by_split.items()):
            results = (
                pipeline
                | f"{split}/list" >> beam.Create(split_items)
                | f"{split}/reshuffle" >> beam.Reshuffle()
                | f"{split}/encode" >> beam.Map(encode_item, settings)
            )
            ok = results | f"{split}/ok" >> beam.Filter(lambda r: r["ok"])
            bad = results | f"{split}/bad" >> beam.Filter(lambda r: not r["ok"])
            _ = (
                ok
                | f"{split}/serialize" >> beam.Map(_to_record, classes)
                | f"{split}/write" >> beam.io.WriteToTFRecord(
                    os.path.join(out_dir, split), file_name_suffix=".tfrecord",
                    num_shards=num_shards or 0, shard_name_template="-SSSSS-of-NNNNN")
            )
            _ = (
                bad
                | f"{split}/fail_json" >> beam.Map(
                    lambda r: json.dumps({k: r[k] for k in ("path", "video_id", "reason")}))
                | f"{split}/fail_write" >> beam.io.WriteToText(
                    os.path.join(out_dir, f"failures-{split}"), file_name_suffix=".jsonl")
            )
            _ = (
                ok
                | f"{split}/video_json" >> beam.Map(_video_json, classes)
                | f"{split}/video_write" >> beam.io.WriteToText(
                    os.path.join(out_dir, f"videos-{split}"), file_name_suffix=".jsonl")
            )
    return merge_outputs(out_dir, settings, classes)


def _video_json(result: dict, classes: list[str]) -> str:
    names = [classes[lab] if isinstance(lab, int) else lab for lab in result["labels"]]
    return json.dumps({"video_id": result["video_id"], "labels": names,
                       "num_frames": len(result["video"].jpeg_frames)})


def _read_jsonl(pattern: str) -> list[dict]:
    import tensorflow as tf

    rows = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def merge_outputs(out_dir: str, settings: EncodeSettings, classes: Sequence[str]) -> dict:
    """Folds Beam's per-split outputs into ``manifest.json`` and ``failures.tsv``.

    The manifest has the local runner's layout (``videos``, ``failures``, ``shards``, ``frames``
    and ``per_class`` per split), so downstream tools cannot tell the runners apart. Works on any
    ``tf.io.gfile`` filesystem.

    Returns:
        The manifest dict.
    """
    import tensorflow as tf

    from slowfast_tf.utils.fileio import atomic_write_text

    splits: dict[str, dict] = {}
    failures: list[dict] = []
    names = {os.path.basename(p) for p in tf.io.gfile.glob(os.path.join(out_dir, "*.jsonl"))}
    split_names = sorted({n.split("-", 1)[1].rsplit("-", 3)[0] for n in names
                          if n.startswith(("videos-", "failures-"))})
    for split in split_names:
        videos = _read_jsonl(os.path.join(out_dir, f"videos-{split}-*.jsonl"))
        bad = _read_jsonl(os.path.join(out_dir, f"failures-{split}-*.jsonl"))
        shards = tf.io.gfile.glob(os.path.join(out_dir, f"{split}-*-of-*.tfrecord"))
        per_class = Counter(lab for v in videos for lab in v["labels"])
        splits[split] = {
            "videos": len(videos), "failures": len(bad), "shards": len(shards),
            "frames": sum(v["num_frames"] for v in videos),
            "per_class": dict(sorted(per_class.items())),
        }
        failures += [{"split": split, **f} for f in sorted(bad, key=lambda f: f["path"])]
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": list(classes),
        "splits": splits,
        "failures": failures,
        "settings": settings.to_dict(),
        "runner": "beam",
        "format": "tf.train.SequenceExample; keys in slowfast_tf/data/records.py",
    }
    atomic_write_text(os.path.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2))
    write_failures_tsv(os.path.join(out_dir, "failures.tsv"), failures)
    return manifest


RUNNER_REQUIRED = {
    "DataflowRunner": ("project", "region", "temp_location"),
    "FlinkRunner": ("flink_master",),
    "SparkRunner": ("spark_master_url",),
}


def check_pipeline_options(pipeline_args: Sequence[str]) -> dict:
    """Parses Beam pipeline options and checks what the chosen runner needs, without network.

    Returns:
        ``{"runner": name, "options": {set options}}``.

    Raises:
        ValueError: unknown runner, a missing required option, or a Dataflow ``temp_location``
            that is not a ``gs://`` path.
    """
    import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(pipeline_args))
    flat = options.get_all_options(drop_default=True, retain_unknown_options=True)
    runner = (flat.get("runner") or "DirectRunner").split(".")[-1]
    known = ("DirectRunner", "PrismRunner", *RUNNER_REQUIRED)
    if runner not in known:
        raise ValueError(f"Beam --runner must be one of {known}. Received: runner={runner!r}")
    missing = [f"--{k}" for k in RUNNER_REQUIRED.get(runner, ()) if not flat.get(k)]
    if missing:
        raise ValueError(
            f"{runner} needs {', '.join(missing)} (pass Beam options after `--`). "
            f"Received: {' '.join(pipeline_args) or '(none)'}"
        )
    if runner == "DataflowRunner" and not str(flat["temp_location"]).startswith("gs://"):
        raise ValueError(
            f"DataflowRunner needs a gs:// --temp_location. Received: {flat['temp_location']!r}"
        )
    return {"runner": runner, "options": flat}
