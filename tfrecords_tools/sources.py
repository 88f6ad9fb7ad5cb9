"""Input listings -> `VideoItem`s: Kinetics CSV, PySlowFast list file, folder-per-class tree.

Kept free of TensorFlow so multiprocessing workers stay light.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


@dataclass(frozen=True)
class VideoItem:
    """One video to convert.

    Args:
        path: str, video file path ("" when it could not be resolved; see `error`).
        video_id: str, stable id written to ``video/id``.
        split: str, output split name (shard prefix).
        labels: tuple of str (class names) or int (class indices); empty = unlabelled.
        error: str, a reason this item already failed before decoding (missing file ...).
    """

    path: str
    video_id: str
    split: str
    labels: tuple = field(default_factory=tuple)
    error: str = ""


def _utf8_error(path: str) -> str:
    """A failure reason for a path that is not valid UTF-8 (records store ids as UTF-8), else ""."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"file name is not valid UTF-8: {shown}"
    return ""


def _kinetics_path(root: str, youtube_id: str, start: int, end: int, label: str) -> tuple[str, str]:
    name = f"{youtube_id}_{start:06d}_{end:06d}"
    folders = [os.path.join(root, label), os.path.join(root, label.replace(" ", "_")), root]
    for folder in folders:
        candidate = os.path.join(folder, name + ".mp4")
        if os.path.exists(candidate):
            return name, candidate
    for folder in folders:
        matches = sorted(glob.glob(os.path.join(glob.escape(folder), glob.escape(name) + ".*")))
        if matches:
            return name, matches[0]
    return name, ""


def read_kinetics_csv(csv_path: str, video_root: str, split: str | None = None) -> list[VideoItem]:
    """Reads a Kinetics annotation CSV (header ``youtube_id,time_start,time_end,split,label``).

    Columns are found by header name, so the official ``label,youtube_id,...`` order works too.
    Files are looked up as ``{root}/{label}/{id}_{start:06d}_{end:06d}.mp4`` (also with spaces in
    the label replaced by ``_``), then flat under ``{root}``, then with any extension. Multi-label
    rows separate labels with ``;``. A missing ``label`` column (the Kinetics test CSV) gives
    unlabelled items.

    Args:
        csv_path: str.
        video_root: str, folder holding the clips.
        split: optional str, keep only rows of this split (the CSV's ``split`` column); the
            output split is the CSV's value, or `split`, or ``"train"``.

    Returns:
        list of VideoItem (missing files carry an `error`).

    Raises:
        ValueError: a malformed row (one line naming the file and line number), missing
            columns, or a file that is not UTF-8 text.
    """
    items = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        try:
            reader = csv.DictReader(f)
            required = {"youtube_id", "time_start", "time_end"}
            if not reader.fieldnames or not required <= set(reader.fieldnames):
                raise ValueError(
                    f"A Kinetics CSV needs the columns {sorted(required)} (+ split, label). "
                    f"Received: columns={reader.fieldnames} in {csv_path}"
                )
            for row in reader:
                item = _kinetics_item(row, video_root, split)
                if isinstance(item, str):
                    raise ValueError(f"{csv_path}:{reader.line_num}: {item}")
                if item is not None:
                    items.append(item)
        except UnicodeDecodeError as e:
            raise ValueError(f"{csv_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except csv.Error as e:
            raise ValueError(f"{csv_path}:{reader.line_num}: malformed CSV ({e})") from None
    return items


def _kinetics_item(row: dict, video_root: str, split: str | None):
    """One CSV row -> VideoItem, None (other split) or a str saying what is wrong with it."""
    if None in row or any(value is None for value in row.values()):
        values = [v for k, v in row.items() if k is not None and v is not None]
        values += row.get(None) or []
        return (f"expected {len(row) - (None in row)} comma-separated fields (one per header "
                f"column). Received: {values}")
    row_split = (row.get("split") or split or "train").strip()
    if split and row_split != split:
        return None
    youtube_id = row["youtube_id"].strip()
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except (ValueError, OverflowError):
        return ("time_start and time_end must be numbers. Received: "
                f"{row['time_start']!r}, {row['time_end']!r}")
    if not youtube_id or start < 0 or end < start:
        return f"expected a youtube_id and 0 <= time_start <= time_end. Received: {row!r}"
    label = (row.get("label") or "").strip()
    labels = tuple(x.strip() for x in label.split(";") if x.strip())
    name, path = _kinetics_path(video_root, youtube_id, start, end, labels[0] if labels else "")
    error = "" if path else f"file not found under {video_root} ({name}.*)"
    return VideoItem(path, name, row_split, labels, error)


def read_list_file(
    list_path: str, split: str, path_prefix: str = "", separator: str | None = None
) -> list[VideoItem]:
    """Reads a PySlowFast list file: one ``path label`` per line (REFERENCE_SPEC §3).

    A 3-field line ``path fn label`` uses the last field, a 1-field line gets label 0 (the
    reference's rules). ``label`` may be a comma-separated list for multi-label data.
    `path_prefix` is joined in front of every path (``DATA.PATH_PREFIX``).

    Args:
        list_path: str.
        split: str, output split name.
        path_prefix: str.
        separator: str or None (any whitespace; PySlowFast's default is one space).

    Returns:
        list of VideoItem with int labels.
    """
    items = []
    # surrogateescape: a non-UTF-8 path fails alone (listed in failures.tsv), not the whole list.
    with open(list_path, encoding="utf-8", errors="surrogateescape") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(separator)
            if len(fields) not in (1, 2, 3):
                raise ValueError(
                    f"{list_path}:{line_no}: expected 'path label'. Received: line={line!r}"
                )
            rel = fields[0]
            label_field = fields[-1] if len(fields) > 1 else "0"
            try:
                labels = tuple(int(x) for x in label_field.split(",") if x != "")
            except ValueError:
                raise ValueError(
                    f"{list_path}:{line_no}: labels must be integers. Received: {label_field!r}"
                ) from None
            path = os.path.join(path_prefix, rel) if path_prefix else rel
            video_id = os.path.splitext(rel)[0]
            error = _utf8_error(path) or ("" if os.path.exists(path) else f"file not found: {path}")
            items.append(VideoItem(path, video_id, split, labels, error))
    return items


def read_folder_tree(root: str, split: str) -> list[VideoItem]:
    """Reads ``root/<class name>/<video>`` (any depth below the class folder).

    Args:
        root: str.
        split: str, output split name.

    Returns:
        list of VideoItem with the class folder name as label; a file whose name is not valid
        UTF-8 carries an `error` (it is listed as a failure, the others convert).
    """
    if not os.path.isdir(root):
        raise ValueError(f"Folder-per-class input must be a directory. Received: root={root!r}")
    items = []
    for class_name in sorted(os.listdir(root)):
        class_dir = os.path.join(root, class_name)
        if not os.path.isdir(class_dir):
            continue
        for dirpath, _, files in sorted(os.walk(class_dir)):
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                    continue
                path = os.path.join(dirpath, name)
                video_id = os.path.splitext(os.path.relpath(path, root))[0]
                items.append(VideoItem(path, video_id, split, (class_name,), _utf8_error(path)))
    return items
