"""``inspect``: counts, shapes and a look at the frames of converted shards.

Prints per-split/class counts, frame-count and size statistics and the first records' metadata;
draws the first frame of a few records as ASCII art in the terminal and writes a PNG contact sheet
(one row per record, ``--frames`` frames evenly spaced through the video, first frame first).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

_ASCII_RAMP = " .:-=+*#%@"


def ascii_thumbnail(frame: np.ndarray, width: int = 32) -> str:
    """Grey-level ASCII rendering of an ``[H, W, 3]`` uint8 frame (terminal characters are about
    twice as tall as wide, hence half as many rows)."""
    h, w = frame.shape[:2]
    rows = max(1, int(round(width * h / w / 2)))
    ys = (np.arange(rows) * h / rows).astype(int)
    xs = (np.arange(width) * w / width).astype(int)
    grey = frame[ys][:, xs].astype(np.float32).mean(-1) / 255.0
    chars = np.asarray(list(_ASCII_RAMP))[(grey * (len(_ASCII_RAMP) - 1)).round().astype(int)]
    return "\n".join("".join(row) for row in chars)


def contact_sheet(rows: list[list[np.ndarray]], thumb: int = 96, pad: int = 2) -> np.ndarray:
    """Tiles frames (each row a list of ``[H, W, 3]`` uint8) into one uint8 image."""
    import tensorflow as tf

    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (thumb + pad) + pad, cols * (thumb + pad) + pad, 3), 32, np.uint8)
    for r, frames in enumerate(rows):
        for c, frame in enumerate(frames):
            small = tf.image.resize_with_pad(tf.cast(frame, tf.float32), thumb, thumb).numpy()
            y, x = pad + r * (thumb + pad), pad + c * (thumb + pad)
            sheet[y : y + thumb, x : x + thumb] = np.clip(small, 0, 255).astype(np.uint8)
    return sheet


def inspect(
    file_pattern: str,
    num_records: int = 4,
    frames: int = 6,
    sheet_path: str | None = None,
    max_records: int = 0,
    ascii_width: int = 32,
) -> dict:
    """Summarises the records matching `file_pattern` and prints the summary.

    Args:
        file_pattern: glob of TFRecord shards.
        num_records: int, records shown (metadata, ASCII frame, contact-sheet row).
        frames: int, frames per contact-sheet row.
        sheet_path: optional PNG path for the contact sheet.
        max_records: int, stop counting after this many records (0 = all).
        ascii_width: int, characters per ASCII row (0 = no ASCII art).

    Returns:
        dict with ``files``, ``records``, ``per_class``, ``frames`` (min/mean/max),
        ``sizes`` (Counter of HxW), ``fps`` and ``shown`` (metadata of the shown records).

    Raises:
        ValueError: no file matches, or a shard is corrupt (truncated, bad checksum, not a
            SequenceExample, undecodable JPEG): one line naming the file and the record.
    """
    import tensorflow as tf

    from slowfast_tf.data.records import parse_sequence_example

    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise ValueError(f"No files match file_pattern. Received: file_pattern={file_pattern!r}")
    per_class: Counter = Counter()
    sizes: Counter = Counter()
    fps: Counter = Counter()
    frame_counts = []
    shown, sheet_rows = [], []
    for path, index, serialized in _records(files, max_records):
        try:
            record = parse_sequence_example(serialized)
            n = int(tf.shape(record["frames"])[0])
        except tf.errors.OpError as e:
            raise _corrupt(path, index, e) from None
        if n == 0:
            raise ValueError(f"{path}: record {index} has no frames")
        if len(shown) >= num_records:
            sizes[f"{int(record['height'])}x{int(record['width'])}"] += 1
        frame_counts.append(n)
        texts = [t.decode() for t in record["label_text"].numpy()]
        indices = record["label_index"].numpy().tolist()
        per_class.update(texts or [str(i) for i in indices] or ["<unlabelled>"])
        fps[round(float(record["fps"]), 3)] += 1
        if len(shown) < num_records:
            picks = np.unique(np.linspace(0, n - 1, max(frames, 1)).astype(int))
            try:
                decoded = [tf.io.decode_jpeg(record["frames"][i], channels=3).numpy()
                           for i in picks]
            except tf.errors.OpError as e:
                raise _corrupt(path, index, e) from None
            sizes[f"{decoded[0].shape[0]}x{decoded[0].shape[1]}"] += 1
            shown.append({
                "video_id": record["video_id"].numpy().decode(), "labels": texts,
                "label_index": indices, "num_frames": n, "fps": float(record["fps"]),
                "shape": [n, *decoded[0].shape],
            })
            sheet_rows.append(decoded)
            if ascii_width:
                shown[-1]["ascii"] = ascii_thumbnail(decoded[0], ascii_width)
    summary = {
        "files": len(files),
        "records": len(frame_counts),
        "per_class": dict(sorted(per_class.items())),
        "frames": {"min": min(frame_counts), "mean": float(np.mean(frame_counts)),
                   "max": max(frame_counts)} if frame_counts else {},
        "sizes": dict(sizes),
        "fps": {str(k): v for k, v in fps.items()},
        "shown": shown,
    }
    if sheet_path and sheet_rows:
        from slowfast_tf.utils import fileio

        png = tf.io.encode_png(contact_sheet(sheet_rows)).numpy()
        fileio.atomic_write_bytes(sheet_path, png)
        summary["sheet"] = sheet_path
    _print_summary(summary)
    return summary


def _records(files: list, max_records: int):
    """Yields ``(file, index in file, serialized record)``; a framing or checksum error becomes a
    one-line ValueError naming the file and how many records were read before it."""
    import tensorflow as tf

    total = 0
    for path in files:
        index = 0
        iterator = iter(tf.data.TFRecordDataset(path))
        while not max_records or total < max_records:
            try:
                serialized = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as e:
                raise _corrupt(path, index, e) from None
            yield path, index, serialized
            index += 1
            total += 1


def _corrupt(path: str, index: int, error) -> ValueError:
    detail = (getattr(error, "message", "") or str(error)).strip().splitlines()
    return ValueError(
        f"{path}: corrupt TFRecord shard at record {index} ({index} read before it): "
        f"{type(error).__name__}: {detail[0][:200] if detail else ''}"
    )


def _print_summary(summary: dict) -> None:
    print(f"files: {summary['files']}  records: {summary['records']}")
    if summary["frames"]:
        f = summary["frames"]
        print(f"frames per video: min {f['min']}  mean {f['mean']:.1f}  max {f['max']}")
    print(f"frame sizes (HxW): {summary['sizes']}  fps: {summary['fps']}")
    print("records per class:")
    for name, count in summary["per_class"].items():
        print(f"  {count:6d}  {name}")
    for record in summary["shown"]:
        print(f"\n{record['video_id']}  labels={record['labels']} {record['label_index']}  "
              f"shape [T,H,W,C]={record['shape']}  fps={record['fps']:.2f}")
        if "ascii" in record:
            print(record["ascii"])
    if "sheet" in summary:
        print(f"\ncontact sheet: {summary['sheet']}")
