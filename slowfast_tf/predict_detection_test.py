"""``python -m slowfast_tf.predict VIDEO --model detector.keras --boxes boxes.csv`` (tiny detector).

One module fixture saves the tiny AVA detector of the serving tests (clip spec ``ava_synthetic`` at
8 frames: short side 32, 4 box slots), writes a 3 s synthetic AVA-like video and a boxes CSV with
keyframes at 1 s (the two actors) and 2 s (the actors plus three more boxes: 5 > 4 slots), and
runs the command once with every output. The README command
``python -m slowfast_tf.predict my_video.mp4 --model=detector.keras --boxes=my_video.csv ...`` is
this run at tiny size.
"""

import contextlib
import io
import json

import av
import numpy as np
import pytest

from slowfast_tf import predict, video_io
from slowfast_tf.clip_spec import get_clip_spec
from slowfast_tf.data.ava import ava_files, ava_pipeline, ava_synthetic
from slowfast_tf.serving import client, detection_signatures
from slowfast_tf.testing import serving_models

LABELS = serving_models.DETECTOR_LABELS
SPEC = get_clip_spec("ava_synthetic", num_frames=8)
EXTRA = [[0.0, 0.0, 1.0, 1.0], [0.05, 0.1, 0.4, 0.5], [0.5, 0.5, 0.95, 0.9]]


def run(*argv):
    """`predict.run` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = predict.run(["predict", *argv])
    return code, out.getvalue(), err.getvalue()


def write_boxes(path, keyframes):
    lines = ["sec,x1,y1,x2,y2"] + [f"{sec:g}," + ",".join(f"{v:.4f}" for v in box)
                                   for sec, boxes in keyframes for box in boxes]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_boxes")
    model = serving_models.tiny_detector()
    model.clip_spec = SPEC.to_dict()  # saved with the .keras file: predict needs no clip flag
    model.save(str(root / "detector.keras"))
    (root / "actions.txt").write_text("\n".join(LABELS) + "\n")
    videos = root / "videos"
    videos.mkdir()
    frames, actors = ava_synthetic.render_video(np.random.default_rng(3), 48, 64, 90)
    video_io.write_mp4(str(videos / "my_video.mp4"), frames, 30)
    keyframes = [(1, [a["boxes"][30] for a in actors]),
                 (2, [a["boxes"][60] for a in actors] + EXTRA)]
    csv_path = write_boxes(videos / "my_video.csv", keyframes)
    out = root / "out"
    out.mkdir()
    code, stdout, stderr = run(
        str(videos / "my_video.mp4"), f"--model={root / 'detector.keras'}", f"--boxes={csv_path}",
        f"--labels={root / 'actions.txt'}", "--top_k=5", "--batch_size=2",
        f"--output_json={out / 'dets.json'}", f"--output_csv={out / 'dets.csv'}",
        f"--visualize={out / 'dets.mp4'}", "--visualize_short_side=96", "--noprogress",
    )
    assert code == 0, stderr
    return {"root": root, "model": model, "videos": videos, "out": out, "stdout": stdout,
            "csv": csv_path, "keyframes": keyframes, "num_actors": len(actors)}


def probabilities_of(report_keyframe):
    return np.array([[e["probability"] for e in sorted(b["top_k"], key=lambda e: e["id"])]
                     for b in report_keyframe["boxes"]])


@pytest.mark.slow  # saves the tiny detector and runs the command (~20-40 s on 2 loaded cores)
def test_per_box_probabilities_equal_the_eval_model_on_the_preprocessed_clip(setup):
    """Each keyframe: the AVA clip (client.keyframe_clip_indices) through the serving
    preprocessing, boxes in slices of max_boxes = 4, then the eval model."""
    report = json.loads((setup["out"] / "dets.json").read_text())["videos"][0]
    frames, fps = video_io.read_frames(str(setup["videos"] / "my_video.mp4"), short_side=32)
    assert frames.shape == (90, 32, 42, 3) and fps == 30
    config = ava_pipeline.config_from_clip_spec(SPEC, max_boxes=4, num_classes=len(LABELS))
    eval_model = setup["model"].build_eval_model()
    assert [k["sec"] for k in report["keyframes"]] == [1, 2]
    for (sec, boxes), got in zip(setup["keyframes"], report["keyframes"]):
        clip = frames[client.keyframe_clip_indices(len(frames), fps, sec, 8, 2)]
        boxes = np.round(np.array(boxes, np.float32), 4)  # as written to the CSV
        np.testing.assert_allclose([b["box"] for b in got["boxes"]], boxes, atol=1e-6)
        expected = []
        for start in range(0, len(boxes), 4):
            chunk = boxes[start : start + 4]
            inputs = detection_signatures.preprocess(clip, chunk, config)
            expected.append(eval_model(inputs, training=False)["probabilities"][0, : len(chunk)])
        expected = np.concatenate(expected)
        probabilities = probabilities_of(got)
        assert probabilities.shape == (len(boxes), len(LABELS))
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert np.ptp(probabilities, axis=0).max() > 0.05  # boxes get different answers
    assert len(report["keyframes"][1]["boxes"]) == setup["num_actors"] + 3  # 5 or 6 > 4 slots


@pytest.mark.slow
def test_json_csv_and_printed_report(setup):
    report = json.loads((setup["out"] / "dets.json").read_text())
    assert report["clip_spec"] == SPEC.to_dict()
    (video,) = report["videos"]
    assert video["video"].endswith("my_video.mp4") and video["fps"] == 30
    n = setup["num_actors"]
    written = [[round(v, 4) for v in box] for _, boxes in setup["keyframes"] for box in boxes]
    got = [[round(v, 4) for v in b["box"]] for k in video["keyframes"] for b in k["boxes"]]
    np.testing.assert_allclose(got, written, atol=1e-6)
    first = video["keyframes"][0]["boxes"][0]["top_k"]
    assert [e["rank"] for e in first] == [1, 2, 3, 4, 5]
    assert [e["probability"] for e in first] == sorted([e["probability"] for e in first],
                                                       reverse=True)
    assert {e["label"] for e in first} == set(LABELS)
    # The official AVA detections CSV: every box x every action id (column c -> id c + 1).
    rows = ava_files.read_detections(str(setup["out"] / "dets.csv"))
    assert len(rows) == (2 * n + 3) * len(LABELS)
    assert {r.video_id for r in rows} == {"my_video"} and [r.sec for r in rows[:: len(LABELS)]] == (
        [1] * n + [2] * (n + 3))
    assert [r.action_id for r in rows[: len(LABELS)]] == [1, 2, 3, 4, 5]
    probabilities = np.concatenate([probabilities_of(k) for k in video["keyframes"]])
    np.testing.assert_allclose([r.score for r in rows], probabilities.reshape(-1), atol=6e-5)
    np.testing.assert_allclose([r.box for r in rows[:: len(LABELS)]], written, atol=6e-4)
    lines = setup["stdout"].strip().splitlines()
    assert lines[0].endswith(f"my_video.mp4 (2 keyframes, {2 * n + 3} boxes)")
    assert lines[1] == f"  keyframe    1.00s: {n} box(es)"
    assert lines[2].startswith("    box 1 [") and f"{first[0]['label']} " in lines[2]
    assert len(lines) == 3 + 2 * n + 3


@pytest.mark.slow
def test_visualization_shows_the_boxes_around_each_keyframe(setup):
    with av.open(str(setup["out"] / "dets.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # The clips' native frames: 22..36 around 1 s and 52..66 around 2 s (8 frames, rate 2).
    assert len(frames) == 30 and frames[0].shape == (96, 128, 3)
    plain, _ = video_io.read_frames(str(setup["videos"] / "my_video.mp4"), short_side=96)
    shown = np.concatenate([plain[22:37], plain[52:67]]).astype(float)
    difference = np.abs(np.stack(frames).astype(float) - shown).mean(axis=-1)
    # Box outlines and labels change pixels on every frame; the caption strip too.
    assert (difference > 40).mean(axis=(1, 2)).min() > 0.01
    # The frame 2 s (index 15 + 8) shows the 2 s keyframe's full-frame box: its outline on the
    # frame edges.
    assert difference[23, :, 0].mean() > 20 and difference[7, 30:60, 0].mean() < 20


@pytest.mark.slow
def test_errors_are_one_line(setup, tmp_path):
    root, videos = setup["root"], setup["videos"]
    video = str(videos / "my_video.mp4")
    detector = f"--model={root / 'detector.keras'}"
    bad = tmp_path / "bad.csv"
    bad.write_text("sec,x1,y1,x2,y2\n1,0.1,0.2,0.5\n")
    late = write_boxes(tmp_path / "late.csv", [(9, [[0.1, 0.1, 0.5, 0.5]])])
    half = write_boxes(tmp_path / "half.csv", [(1.5, [[0.1, 0.1, 0.5, 0.5]])])
    (tmp_path / "empty").mkdir()
    cases = [
        ((video, detector), "is a detection model: pass --boxes"),
        ((video, detector, f"--boxes={bad}"), f"{bad} line 2: expected 5 columns, got 4"),
        ((video, detector, f"--boxes={late}"), "Keyframe at 9.0 s is past the end of the video"),
        ((video, detector, f"--boxes={half}", f"--output_csv={tmp_path / 'x.csv'}"),
         "timestamps are whole seconds; " + video + " has a keyframe at 1.5 s"),
        ((video, detector, f"--boxes={setup['csv']}", f"--features={tmp_path / 'f.npy'}"),
         "--features is for classifiers"),
        ((str(videos), detector, f"--boxes={tmp_path / 'empty'}"),
         f"no boxes CSV {tmp_path / 'empty' / 'my_video.csv'}"),
        ((str(videos), detector, f"--boxes={setup['csv']}"), "--boxes must be a directory"),
        ((video, "--preset=slowfast_r50_8x8", f"--boxes={setup['csv']}",
          '--model_overrides={"depth": 18, "width": 8, "beta_inv": 4, "num_frames": 8, '
          '"image_size": 32}'),
         "--boxes is for detection models (the ava_* presets); slowfast_r50_8x8 is a classifier"),
    ]
    for argv, message in cases:
        code, _, stderr = run(*argv, "--noprogress")
        assert code == 2, (argv, stderr)
        lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            argv, stderr)


@pytest.mark.slow
def test_directory_with_csvs_next_to_the_videos(setup, tmp_path):
    """``--boxes videos/``: each video's CSV sits next to it (``my_video.csv``)."""
    videos = setup["videos"]
    code, stdout, stderr = run(str(videos), f"--model={setup['root'] / 'detector.keras'}",
                               f"--boxes={videos}", f"--output_json={tmp_path / 'all.json'}",
                               "--top_k=5", "--noprogress")
    assert code == 0, stderr
    report = json.loads((tmp_path / "all.json").read_text())["videos"]
    single = json.loads((setup["out"] / "dets.json").read_text())["videos"]
    assert [v["video"] for v in report] == [str(videos / "my_video.mp4")]
    for a, b in zip(report[0]["keyframes"], single[0]["keyframes"]):
        np.testing.assert_allclose(probabilities_of(a), probabilities_of(b), atol=1e-6)
    assert "2 keyframes" in stdout
