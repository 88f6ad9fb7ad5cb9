"""``--runner beam``: the same per-video function (`encode_item`) as a multi-machine Beam job.

apache-beam is an optional extra (``pip install "slowfast_tf[beam]"``) and is imported lazily.
Beam writes shards through its own temp-and-finalize file sinks, so a failed job leaves no partial
shards; unlike the local runner it does not resume shard by shard (Beam retries failed bundles
instead). Pass Beam pipeline options after ``--`` on the command line, e.g.
``-- --runner=DataflowRunner --project=... --temp_location=gs://...``.

Not exercised in this repository's CI (apache-beam is not installed there); the shared pieces
(`encode_item`, `LabelMap`, `make_sequence_example`, `write_manifest`-style counts) are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

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
) -> None:
    """Runs the conversion as a Beam pipeline (one branch per split).

    Writes ``{split}-SSSSS-of-NNNNN.tfrecord`` shards, ``failures-{split}*.jsonl`` and
    ``counts-{split}*.json`` under `out_dir`.
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
                | f"{split}/labels" >> beam.FlatMap(
                    lambda r: [classes[lab] if isinstance(lab, int) else lab for lab in r["labels"]])
                | f"{split}/count" >> beam.combiners.Count.PerElement()
                | f"{split}/count_dict" >> beam.combiners.ToDict()
                | f"{split}/count_json" >> beam.Map(json.dumps)
                | f"{split}/count_write" >> beam.io.WriteToText(
                    os.path.join(out_dir, f"counts-{split}"), file_name_suffix=".json")
            )
