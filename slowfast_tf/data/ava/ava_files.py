"""Readers and writers of the AVA v2.x text files (annotations, proposals, label map, exclusions).

Formats (no header line in any CSV):

* annotations ``video_id,sec,x1,y1,x2,y2,action_id,person_id``; one row per (box, label) pair,
  normalised coordinates, (0, 0) top left. The 8th column is optional.
* detector boxes / detections ``video_id,sec,x1,y1,x2,y2,action_id,score``; an empty action id
  (PySlowFast proposal lists) means "person box without label" and reads as -1.
* label map pbtxt, v2.1 ``item { name: "..." id: N }`` or v2.2
  ``label { name: "..." label_id: N label_type: ... }``; the name must come before the id.
* exclusions ``video_id,sec``.

A keyframe key is ``(video_id, int(sec))``, printed as the official ``"%s,%04d"``; ``902`` and
``0902`` are the same key and a non-integer second (``902.5``) is an error, as in the official
``make_image_key``. Malformed rows raise ``ValueError("FILE:LINE: ...")``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slowfast_tf.utils.fileio import atomic_open

NUM_ACTIONS = 80  # AVA action ids run 1..80; the model predicts all 80
# The 60 ids of ``ava_action_list_v2.1_for_activitynet_2018.pbtxt`` (the evaluated subset). A
# label map file given by the user always wins; this constant only serves callers without one.
AVA_V21_EVAL_IDS = (
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36,
    37, 38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66,
    67, 68, 69, 70, 72, 73, 74, 76, 77, 78, 79, 80,
)


@dataclass(frozen=True)
class AvaRow:
    """One CSV row: a box with one action label (or -1) and a person id or score.

    ``box`` is ``(x1, y1, x2, y2)`` normalised; ``box_text`` the four coordinate fields exactly as
    written, which PySlowFast uses to merge the labels of one box.
    """

    video_id: str
    sec: int
    box: tuple[float, float, float, float]
    action_id: int
    person_id: int = -1
    score: float = 1.0
    box_text: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.video_id, self.sec)


def format_key(video_id: str, sec: int) -> str:
    """The official image key ``"%s,%04d"``."""
    return f"{video_id},{int(sec):04d}"


def _error(path: str, line: int, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}")


def _parse_sec(text: str, path: str, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise _error(path, line, f"timestamp must be an integer second. Received: {text!r}") from None


def _read_csv_rows(path: str) -> Iterable[tuple[int, list[str]]]:
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            yield line_no, [field.strip() for field in row]


def _parse_box(row: list[str], path: str, line: int) -> tuple[float, float, float, float]:
    try:
        return tuple(float(v) for v in row[2:6])  # type: ignore[return-value]
    except ValueError:
        raise _error(path, line, f"box coordinates must be numbers. Received: {row[2:6]}") from None


def read_annotations(path: str) -> list[AvaRow]:
    """Ground-truth CSV ``video_id,sec,x1,y1,x2,y2,action_id[,person_id]`` -> rows in file order."""
    rows = []
    for line, row in _read_csv_rows(path):
        if len(row) not in (7, 8):
            raise _error(path, line, "expected 7 or 8 columns (video_id,sec,x1,y1,x2,y2,action_id"
                         f",person_id). Received: {len(row)} columns {row}")
        sec = _parse_sec(row[1], path, line)
        box = _parse_box(row, path, line)
        try:
            action = int(row[6])
            person = int(row[7]) if len(row) == 8 and row[7] else -1
        except ValueError:
            raise _error(path, line, f"action_id and person_id must be integers. Received: "
                         f"{row[6:]}") from None
        rows.append(AvaRow(row[0], sec, box, action, person_id=person, box_text=",".join(row[2:6])))
    return rows


def read_detections(path: str) -> list[AvaRow]:
    """Detector-box or detection CSV ``video_id,sec,x1,y1,x2,y2,action_id,score`` -> rows.

    An empty action id gives -1 (a person box with no label, PySlowFast's negative proposals).
    """
    rows = []
    for line, row in _read_csv_rows(path):
        if len(row) != 8:
            raise _error(path, line, "expected 8 columns (video_id,sec,x1,y1,x2,y2,action_id,score)"
                         f". Received: {len(row)} columns {row}")
        sec = _parse_sec(row[1], path, line)
        box = _parse_box(row, path, line)
        try:
            action = int(row[6]) if row[6] else -1
            score = float(row[7])
        except ValueError:
            raise _error(path, line, "action_id must be an integer (or empty) and score a number. "
                         f"Received: {row[6:]}") from None
        rows.append(AvaRow(row[0], sec, box, action, score=score, box_text=",".join(row[2:6])))
    return rows


def read_exclusions(path: str) -> set[tuple[str, int]]:
    """Exclusions CSV ``video_id,sec`` -> set of keys."""
    keys = set()
    for line, row in _read_csv_rows(path):
        if len(row) != 2:
            raise _error(path, line, f"expected 2 columns (video_id,sec). Received: {row}")
        keys.add((row[0], _parse_sec(row[1], path, line)))
    return keys


_PBTXT_TOKEN = re.compile(r'\b(name|display_name|id|label_id|label_type)\s*:\s*("(?:[^"\\]|\\.)*"|\S+)')


def read_label_map(path: str) -> dict[int, str]:
    """Label map pbtxt (v2.1 ``item{name id}`` or v2.2 ``label{name label_id}``) -> ``{id: name}``.

    Ids keep file order. Like the official ``read_labelmap``, an id line takes the last name seen.
    """
    with open(path) as f:
        text = f.read()
    label_map: dict[int, str] = {}
    name = None
    for match in _PBTXT_TOKEN.finditer(text):
        field, value = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        if field == "name":
            if not value.startswith('"'):
                raise _error(path, line, f"name must be a quoted string. Received: {value}")
            name = value[1:-1]
        elif field in ("id", "label_id"):
            if name is None:
                raise _error(path, line, f"{field} before any name")
            try:
                class_id = int(value)
            except ValueError:
                raise _error(path, line, f"{field} must be an integer. Received: {value}") from None
            if class_id in label_map:
                raise _error(path, line, f"duplicate id {class_id}")
            if class_id < 1:
                raise _error(path, line, f"ids start at 1. Received: {class_id}")
            label_map[class_id] = name
            name = None
    if not label_map:
        raise ValueError(f"{path}:1: no `name: ... id: ...` entries found in the label map")
    return label_map


def label_map_text(label_map: dict[int, str], version: str = "v2.1") -> str:
    """pbtxt text of `label_map` in the v2.1 (``item``) or v2.2 (``label``) layout."""
    if version not in ("v2.1", "v2.2"):
        raise ValueError(f"version must be 'v2.1' or 'v2.2'. Received: {version!r}")
    out = io.StringIO()
    for class_id, name in label_map.items():
        if version == "v2.1":
            out.write(f'item {{\n  name: "{name}"\n  id: {class_id}\n}}\n')
        else:
            out.write(f'label {{\n  name: "{name}"\n  label_id: {class_id}\n'
                      "  label_type: PERSON_MOVEMENT\n}\n")
    return out.getvalue()


def write_label_map(path: str, label_map: dict[int, str], version: str = "v2.1") -> None:
    with atomic_open(path, "w") as f:
        f.write(label_map_text(label_map, version))


def _box_fields(box: Sequence[float], decimals: int) -> str:
    return ",".join(f"{float(v):.{decimals}f}" for v in box)


def write_annotations(path: str, rows: Iterable[AvaRow]) -> None:
    """Ground-truth CSV in the released layout (``%04d`` seconds, ``%.3f`` coordinates)."""
    with atomic_open(path, "w") as f:
        for r in rows:
            f.write(f"{r.video_id},{r.sec:04d},{_box_fields(r.box, 3)},{r.action_id},{r.person_id}\n")


def write_exclusions(path: str, keys: Iterable[tuple[str, int]]) -> None:
    with atomic_open(path, "w") as f:
        for video_id, sec in keys:
            f.write(f"{video_id},{int(sec):04d}\n")


def write_detections(path: str, rows: Iterable[AvaRow], box_decimals: int = 3,
                     score_decimals: int | None = 4) -> None:
    """Detections CSV ``video_id,sec,x1,y1,x2,y2,action_id,score`` for the official tool.

    The defaults (``%.3f`` boxes, ``%.4f`` scores) are PySlowFast's ``write_results``; the official
    evaluator reads any precision. ``score_decimals=None`` writes each score exactly (Python's
    shortest round-trip ``repr``), so the file gives the same AP as the scores in memory: rounding
    makes ties of close scores, and AP then depends on how the sort orders the tied TPs and FPs.
    An action id of -1 is written as an empty field (a proposal without label).
    """
    with atomic_open(path, "w") as f:
        for r in rows:
            action = "" if r.action_id < 0 else str(r.action_id)
            score = (repr(float(r.score)) if score_decimals is None
                     else f"{float(r.score):.{score_decimals}f}")
            f.write(f"{r.video_id},{r.sec:04d},{_box_fields(r.box, box_decimals)},{action},"
                    f"{score}\n")


def detections_from_scores(
    keys: Sequence[tuple[str, int]],
    boxes: Sequence[Sequence[float]],
    scores,
    class_ids: Iterable[int],
) -> list[AvaRow]:
    """Per-box 80-way scores -> one row per (box, label-map id), PySlowFast's ``write_results``.

    Args:
        keys: ``(video_id, sec)`` per box.
        boxes: ``(x1, y1, x2, y2)`` normalised per box.
        scores: ``[num_boxes, 80]`` probabilities; column ``i`` is action id ``i + 1``.
        class_ids: ids to emit (the label map's, e.g. the 60 evaluated ones).
    """
    class_ids = sorted(class_ids)
    rows = []
    for (video_id, sec), box, row_scores in zip(keys, boxes, scores, strict=True):
        box = tuple(float(v) for v in box)
        for class_id in class_ids:
            rows.append(AvaRow(video_id, int(sec), box, class_id,
                               score=float(row_scores[class_id - 1])))
    return rows
