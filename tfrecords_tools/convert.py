"""Videos -> sharded TFRecords of SequenceExamples, resumable, with a manifest and failure list.

Output directory layout::

    OUT/classes.txt                         label map, one class per line (reused by later splits)
    OUT/{split}-{k:05d}-of-{n:05d}.tfrecord finished shards only (temp file + rename)
    OUT/_meta/{shard}.json                  ids, labels, failures and plan hash of one finished shard
    OUT/_meta/settings.json                 per split: encode settings, shard count, plan hash
    OUT/failures.tsv                        split, path, video id, reason (all splits; csv-quoted)
    OUT/manifest.json                       counts per split / class, classes, failures, settings

The output directory must be a local path (shards are renamed with ``os.replace``); use the Beam
runner to write to cloud storage. Every file is written through `slowfast_tf.utils.fileio`
(temp file in the same folder, then rename).

Resuming: the shard plan is a deterministic function of the inputs, ``--seed`` and the shard
count, so a rerun recomputes it, skips shards whose final file exists and redoes the rest. What
each shard holds (its video ids and labels) is hashed into ``_meta``; a rerun whose plan differs
(input list, settings, seed or shard count changed) is refused while shards of the old plan
exist, or, with ``overwrite=True`` (``--overwrite``), the split's old shards are deleted and it is
converted again. Old and new plans are never mixed. A killed run leaves at most hidden temp files
(``.tmp-*``), which the next run deletes; readers globbing ``{split}-*.tfrecord`` never see them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from slowfast_tf.utils import fileio
from tfrecords_tools.encode import EncodeSettings, encode_item
from tfrecords_tools.sources import VideoItem

CLASSES_FILE = "classes.txt"
META_DIR = "_meta"


@dataclass
class Shard:
    """One output shard: its final path and the items it holds, in write order."""

    split: str
    index: int
    count: int
    items: list

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"

    @property
    def plan_hash(self) -> str:
        """sha256 of what this shard holds: its name and each video's id and labels, in order."""
        content = [self.name] + [[it.video_id, [str(x) for x in it.labels]] for it in self.items]
        return hashlib.sha256(json.dumps(content).encode("utf-8", "backslashreplace")).hexdigest()


class LabelMap:
    """Class names <-> indices, persisted as ``classes.txt`` in the output directory."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self._index = {name: i for i, name in enumerate(self.classes)}
        if len(self._index) != len(self.classes):
            raise ValueError(f"Class names must be unique. Received: classes={self.classes}")

    @classmethod
    def resolve(cls, out_dir: str, items: Sequence[VideoItem], classes_file: str | None = None):
        """Given file > existing ``OUT/classes.txt`` > derived from the items (sorted names, or
        ``"0".."max"`` for integer labels). Writes ``OUT/classes.txt`` when it is new."""
        os.makedirs(out_dir, exist_ok=True)
        existing = os.path.join(out_dir, CLASSES_FILE)
        if classes_file:
            label_map = cls(_read_lines(classes_file))
            if os.path.exists(existing) and _read_lines(existing) != label_map.classes:
                raise ValueError(
                    f"{existing} already holds a different label map than {classes_file}; "
                    "use a new output directory or the same classes file."
                )
        elif os.path.exists(existing):
            label_map = cls(_read_lines(existing))
        else:
            labels = {label for item in items for label in item.labels}
            if labels and all(isinstance(label, int) for label in labels):
                label_map = cls([str(i) for i in range(max(labels) + 1)])
            else:
                label_map = cls(sorted(str(label) for label in labels))
        if not os.path.exists(existing):
            _atomic_write(existing, "\n".join(label_map.classes) + "\n")
        return label_map

    def encode(self, labels: Sequence) -> tuple[list[int], list[str]]:
        """Labels (names or indices) -> (indices, names); ValueError on an unknown label."""
        indices, names = [], []
        for label in labels:
            if isinstance(label, int):
                if not 0 <= label < len(self.classes):
                    raise ValueError(f"label index {label} outside classes.txt (0..{len(self.classes) - 1})")
                indices.append(label)
                names.append(self.classes[label])
            else:
                if label not in self._index:
                    raise ValueError(f"label {label!r} not in classes.txt")
                indices.append(self._index[label])
                names.append(label)
        return indices, names


def _read_lines(path: str) -> list[str]:
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _atomic_write(path: str, text: str) -> None:
    fileio.atomic_write_text(path, text)


def plan_shards(
    items: Sequence[VideoItem], num_shards: int = 0, videos_per_shard: int = 64, seed: int = 0
) -> list[Shard]:
    """Deterministic shard plan per split: shuffle by `seed` (classes mix across shards), then
    deal the videos round-robin so shard sizes differ by at most one."""
    by_split: dict[str, list[VideoItem]] = {}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    shards = []
    for split in sorted(by_split):
        split_items = sorted(by_split[split], key=lambda it: (it.video_id, it.path))
        random.Random(f"{seed}:{split}").shuffle(split_items)
        n = num_shards or math.ceil(len(split_items) / max(videos_per_shard, 1))
        n = max(1, min(n, len(split_items)))
        shards += [Shard(split, k, n, split_items[k::n]) for k in range(n)]
    return shards


def remove_stale_temp_files(out_dir: str) -> int:
    """Deletes temp-file leftovers of an interrupted run (``.tmp-*`` and the older ``.*.tmp``);
    returns how many."""
    removed = 0
    for folder in (out_dir, os.path.join(out_dir, META_DIR)):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp")):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def _worker_init():
    # Decoding threads per worker: PyAV's AUTO threading plus N processes would oversubscribe.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _encode_task(args):
    item, settings = args
    return encode_item(item, settings)


def _results(tasks: list, settings: EncodeSettings, workers: int) -> Iterator[dict]:
    if workers <= 0:
        for item in tasks:
            yield encode_item(item, settings)
        return
    # spawn, not fork: the parent has TensorFlow loaded, which is not fork-safe; the workers
    # import only PyAV and numpy.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init) as pool:
        # imap keeps input order, so shards complete one after another while all workers run.
        yield from pool.imap(_encode_task, [(t, settings) for t in tasks], chunksize=1)


def convert(
    items: Sequence[VideoItem],
    out_dir: str,
    settings: EncodeSettings = EncodeSettings(),
    *,
    classes_file: str | None = None,
    num_shards: int = 0,
    videos_per_shard: int = 64,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Converts `items` into shards under `out_dir` (local runner) and returns the manifest.

    Args:
        items: VideoItems from `tfrecords_tools.sources`.
        out_dir: str, output directory (created).
        settings: EncodeSettings.
        classes_file: optional str, label map to use (else ``OUT/classes.txt`` or derived).
        num_shards: int, shards per split (0: ``ceil(videos / videos_per_shard)``).
        videos_per_shard: int.
        workers: int, encoding processes (0 = in this process). Workers are spawned, so a
            script calling this with workers > 0 needs the usual ``if __name__ == "__main__":``
            guard, and its top-level imports are repeated in every worker.
        seed: int, seed of the shard assignment.
        progress: bool, tqdm bar.
        overwrite: bool, when a split in `out_dir` was converted with a different plan (input
            list, settings, seed or shard count), delete its shards and convert it again instead
            of refusing.

    Returns:
        The manifest dict (also written to ``OUT/manifest.json``).

    Raises:
        ValueError: a split's existing shards were planned differently and `overwrite` is False.
    """
    import tensorflow as tf

    from slowfast_tf.data.records import make_sequence_example

    if not items:
        raise ValueError("No videos to convert: the input listing is empty.")
    os.makedirs(os.path.join(out_dir, META_DIR), exist_ok=True)
    stale = remove_stale_temp_files(out_dir)
    if stale:
        print(f"removed {stale} temp file(s) of an interrupted run")
    label_map = LabelMap.resolve(out_dir, items, classes_file)
    shards = plan_shards(items, num_shards, videos_per_shard, seed)
    _check_plan(out_dir, settings, shards, overwrite)
    pending = [s for s in shards if not os.path.exists(os.path.join(out_dir, s.name + ".tfrecord"))]
    done = len(shards) - len(pending)
    if done:
        print(f"resuming: {done} of {len(shards)} shard(s) already finished")

    tasks = []
    for shard in pending:
        for item in shard.items:
            error = item.error
            if not error:
                try:
                    label_map.encode(item.labels)
                except ValueError as e:
                    error = str(e)
            tasks.append({"path": item.path, "video_id": item.video_id, "split": item.split,
                          "labels": list(item.labels), "error": error})

    bar = tqdm(total=len(tasks), desc="videos", unit="video", disable=not progress)
    results = _results(tasks, settings, workers)
    for shard in pending:
        final = os.path.join(out_dir, shard.name + ".tfrecord")
        meta = {"shard": shard.name, "split": shard.split, "plan": shard.plan_hash,
                "videos": [], "failures": []}
        with fileio.atomic_path(final) as tmp:
            with tf.io.TFRecordWriter(tmp) as writer:
                for _ in shard.items:
                    result = next(results)
                    bar.update(1)
                    if not result["ok"]:
                        meta["failures"].append(
                            {k: result[k] for k in ("path", "video_id", "reason")})
                        continue
                    video = result["video"]
                    indices, names = label_map.encode(result["labels"])
                    example = make_sequence_example(
                        video.jpeg_frames, indices, names, result["video_id"], video.fps,
                        video.height, video.width,
                    )
                    writer.write(example.SerializeToString())
                    meta["videos"].append({"video_id": result["video_id"], "labels": names,
                                           "num_frames": len(video.jpeg_frames)})
            # Meta first, shard last (renamed when this block exits): a shard file is only ever
            # visible together with its meta.
            _atomic_write(os.path.join(out_dir, META_DIR, shard.name + ".json"), json.dumps(meta))
    bar.close()
    return write_manifest(out_dir, settings, label_map.classes)


def _split_files(out_dir: str, split: str) -> list[str]:
    """Finished shards of `split` in `out_dir` and their ``_meta`` files (paths)."""
    pattern = re.compile(re.escape(split) + r"-\d{5}-of-\d{5}\.(tfrecord|json)")
    found = []
    for folder, ext in ((out_dir, "tfrecord"), (os.path.join(out_dir, META_DIR), "json")):
        if os.path.isdir(folder):
            found += [os.path.join(folder, name) for name in sorted(os.listdir(folder))
                      if pattern.fullmatch(name) and name.endswith(ext)]
    return found


def _split_plan(settings: EncodeSettings, shards: list[Shard]) -> dict:
    """What a split's shards are planned to hold, as saved in ``_meta/settings.json``."""
    digest = hashlib.sha256("".join(s.plan_hash for s in shards).encode()).hexdigest()
    return {
        "encode": {k: v for k, v in settings.to_dict().items() if k != "delay_per_video"},
        "num_shards": shards[0].count,
        "plan": {"videos": sum(len(s.items) for s in shards), "sha256": digest},
    }


def _plan_difference(saved: dict | None, entry: dict) -> str:
    if saved is None:
        return "no plan was recorded (an older converter, or _meta/settings.json was removed)"
    if saved.get("encode") != entry["encode"]:
        return f"different settings: {saved.get('encode')} then, {entry['encode']} now"
    if saved.get("num_shards") != entry["num_shards"]:
        return (f"different settings: {saved.get('num_shards')} shards then, "
                f"{entry['num_shards']} now")
    then = saved.get("plan") or {}
    return (f"a different input list or --seed: {then.get('videos', '?')} videos planned then, "
            f"{entry['plan']['videos']} now (plan sha256 {str(then.get('sha256'))[:12]} vs "
            f"{entry['plan']['sha256'][:12]})")


def _check_plan(out_dir: str, settings: EncodeSettings, shards: list[Shard],
                overwrite: bool) -> None:
    """Refuses (or, with `overwrite`, deletes) a split's shards planned differently from now.

    A split's plan is its encode settings, shard count and the sha256 of every shard's videos
    and labels. Finished shards are also checked one by one against their ``_meta`` plan hash.
    """
    path = os.path.join(out_dir, META_DIR, "settings.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    for split in sorted({s.split for s in shards}):
        split_shards = [s for s in shards if s.split == split]
        entry = _split_plan(settings, split_shards)
        existing = _split_files(out_dir, split)
        reason = None
        if saved.get(split) != entry:
            reason = _plan_difference(saved.get(split), entry)
        else:
            for shard in split_shards:
                meta_path = os.path.join(out_dir, META_DIR, shard.name + ".json")
                if os.path.exists(os.path.join(out_dir, shard.name + ".tfrecord")):
                    meta = {}
                    if os.path.exists(meta_path):
                        with open(meta_path) as f:
                            meta = json.load(f)
                    if meta.get("plan") != shard.plan_hash:
                        reason = f"shard {shard.name} holds other videos than planned now"
                        break
        if reason and existing:
            shard_files = [p for p in existing if p.endswith(".tfrecord")]
            if not overwrite:
                raise ValueError(
                    f"Split {split!r} in {out_dir} has {len(shard_files)} finished shard(s) "
                    f"converted with {reason}. Refusing to mix them with this run: rerun with "
                    "--overwrite to delete them and convert the split again, or use a new "
                    "output directory."
                )
            for file in existing:
                os.remove(file)
            print(f"--overwrite: deleted {len(shard_files)} shard(s) of split {split!r} "
                  f"converted with {reason}")
        saved[split] = entry
    _atomic_write(path, json.dumps(saved, indent=2))


def write_manifest(out_dir: str, settings: EncodeSettings, classes: Sequence[str]) -> dict:
    """Aggregates every shard's meta into ``manifest.json`` and ``failures.tsv``."""
    meta_dir = os.path.join(out_dir, META_DIR)
    splits: dict[str, dict] = {}
    failures = []
    for name in sorted(os.listdir(meta_dir)):
        if not name.endswith(".json") or name == "settings.json":
            continue
        with open(os.path.join(meta_dir, name)) as f:
            meta = json.load(f)
        if not os.path.exists(os.path.join(out_dir, meta["shard"] + ".tfrecord")):
            continue
        entry = splits.setdefault(meta["split"], {"videos": 0, "failures": 0, "shards": 0,
                                                  "frames": 0, "per_class": Counter()})
        entry["shards"] += 1
        entry["videos"] += len(meta["videos"])
        entry["failures"] += len(meta["failures"])
        for video in meta["videos"]:
            entry["frames"] += video["num_frames"]
            entry["per_class"].update(video["labels"])
        failures += [{"split": meta["split"], **f} for f in meta["failures"]]
    for entry in splits.values():
        entry["per_class"] = dict(sorted(entry["per_class"].items()))
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": list(classes),
        "splits": splits,
        "failures": failures,
        "settings": settings.to_dict(),
        "format": "tf.train.SequenceExample; keys in slowfast_tf/data/records.py",
    }
    _atomic_write(os.path.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2))
    write_failures_tsv(os.path.join(out_dir, "failures.tsv"), failures)
    return manifest


FAILURE_COLUMNS = ("split", "path", "video_id", "reason")


def write_failures_tsv(path: str, failures: Sequence[dict]) -> None:
    """Writes ``failures.tsv`` with the csv module (tab-separated; fields holding a tab, newline
    or quote are quoted), so a crafted file name cannot forge rows. Read it back with
    ``csv.reader(f, delimiter="\t")``. Names that are not valid UTF-8 are written with
    backslash escapes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(FAILURE_COLUMNS)
    for failure in failures:
        writer.writerow([failure.get(k, "") for k in FAILURE_COLUMNS])
    _atomic_write(path, printable(buffer.getvalue()))


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a non-UTF-8 file name (``os.listdir``'s surrogate
    escapes) shown as ``\\xNN``, so it can be written as UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
