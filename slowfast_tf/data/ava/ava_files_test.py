import pytest

from slowfast_tf.data.ava import ava_files


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_annotations_round_trip_and_key_normalisation(tmp_path):
    path = _write(tmp_path / "gt.csv", "vidA,0902,0.100,0.200,0.500,0.900,12,3\n\n"
                                       "vidA,902,0.1,0.2,0.5,0.9,80\n")
    rows = ava_files.read_annotations(path)
    assert [r.key for r in rows] == [("vidA", 902), ("vidA", 902)]
    assert rows[0].box == (0.1, 0.2, 0.5, 0.9) and rows[0].action_id == 12 and rows[0].person_id == 3
    assert rows[0].box_text == "0.100,0.200,0.500,0.900" and rows[1].person_id == -1
    assert ava_files.format_key("vidA", 902) == "vidA,0902"
    out = str(tmp_path / "again.csv")
    ava_files.write_annotations(out, rows[:1])
    assert open(out).read() == "vidA,0902,0.100,0.200,0.500,0.900,12,3\n"
    assert ava_files.read_annotations(out) == rows[:1]


@pytest.mark.parametrize("line, match", [
    ("v,902,0.1,0.2,0.5\n", r"gt.csv:2: expected 7 or 8 columns"),
    ("v,902.5,0.1,0.2,0.5,0.9,1,0\n", r"gt.csv:2: timestamp must be an integer second"),
    ("v,902,0.1,x,0.5,0.9,1,0\n", r"gt.csv:2: box coordinates must be numbers"),
    ("v,902,0.1,0.2,0.5,0.9,a,0\n", r"gt.csv:2: action_id and person_id must be integers"),
])
def test_malformed_annotation_rows_name_file_and_line(tmp_path, line, match):
    path = _write(tmp_path / "gt.csv", "v,902,0.1,0.2,0.5,0.9,1,0\n" + line)
    with pytest.raises(ValueError, match=match):
        ava_files.read_annotations(path)


def test_detections_read_write_and_empty_label(tmp_path):
    path = _write(tmp_path / "boxes.csv", "v,0903,0.1,0.2,0.3,0.4,,0.95\nv,0903,0.1,0.2,0.3,0.4,5,0.5\n")
    rows = ava_files.read_detections(path)
    assert [r.action_id for r in rows] == [-1, 5] and [r.score for r in rows] == [0.95, 0.5]
    out = str(tmp_path / "det.csv")
    ava_files.write_detections(out, rows)
    assert open(out).read() == "v,0903,0.100,0.200,0.300,0.400,,0.9500\nv,0903,0.100,0.200,0.300,0.400,5,0.5000\n"
    with pytest.raises(ValueError, match=r"boxes.csv:1: expected 8 columns"):
        ava_files.read_detections(_write(tmp_path / "boxes.csv", "v,0903,0.1,0.2,0.3,0.4,5\n"))
    with pytest.raises(ValueError, match=r"boxes.csv:1: action_id must be an integer"):
        ava_files.read_detections(_write(tmp_path / "boxes.csv", "v,0903,0.1,0.2,0.3,0.4,5,hi\n"))


def test_detections_from_scores_emits_one_row_per_label_map_id():
    scores = [[i / 100 for i in range(80)]]
    rows = ava_files.detections_from_scores([("v", 902)], [(0.1, 0.2, 0.3, 0.4)], scores, [80, 1])
    assert [(r.action_id, r.score) for r in rows] == [(1, 0.0), (80, 0.79)]


def test_label_map_both_versions_and_errors(tmp_path):
    names = {1: "bend/bow (at the waist)", 3: "crouch/kneel", 80: "watch (a person)"}
    for version in ("v2.1", "v2.2"):
        path = str(tmp_path / f"{version}.pbtxt")
        ava_files.write_label_map(path, names, version)
        assert ava_files.read_label_map(path) == names
    one_line = _write(tmp_path / "a.pbtxt", 'item { name: "a" id: 4 }\nitem { name: "b" id: 2 }\n')
    assert list(ava_files.read_label_map(one_line).items()) == [(4, "a"), (2, "b")]
    with pytest.raises(ValueError, match=r"d.pbtxt:3: duplicate id 4"):
        ava_files.read_label_map(_write(tmp_path / "d.pbtxt", 'item {\n name: "a" id: 4 }\n item { name: "b" id: 4 }'))
    with pytest.raises(ValueError, match=r"e.pbtxt:2: id before any name"):
        ava_files.read_label_map(_write(tmp_path / "e.pbtxt", "item {\n  id: 4\n}\n"))
    with pytest.raises(ValueError, match=r"f.pbtxt:1: no `name"):
        ava_files.read_label_map(_write(tmp_path / "f.pbtxt", "nothing here\n"))


def test_exclusions_and_eval_subset(tmp_path):
    path = str(tmp_path / "ex.csv")
    ava_files.write_exclusions(path, [("v", 902), ("w", 1000)])
    assert open(path).read() == "v,0902\nw,1000\n"
    assert ava_files.read_exclusions(path) == {("v", 902), ("w", 1000)}
    with pytest.raises(ValueError, match=r"ex.csv:1: expected 2 columns"):
        ava_files.read_exclusions(_write(tmp_path / "ex.csv", "v,902,1\n"))
    ids = ava_files.AVA_V21_EVAL_IDS
    assert len(set(ids)) == 60 and min(ids) == 1 and max(ids) == 80
