"""`python -m slowfast_tf.predict` on synthetic videos with a tiny SlowFast classifier.

One module fixture saves the tiny model (``.keras`` and ``.weights.h5``) and runs the command once
on a 2 s video with every output (`--output_json`, `--output_csv`, `--features`, `--visualize`,
`--timeline`); the tests check those files. The README command
``python -m slowfast_tf.predict my_video.mp4 --model model.keras --labels classes.txt ...`` is this
run at tiny size.
"""

import contextlib
import csv
import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from slowfast_tf import models, predict, video_io
from slowfast_tf.clip_spec import ClipSpec, get_clip_spec, sidecar_path
from slowfast_tf.data import synthetic

LABELS = ["flicker_low", "flicker_high", "dart_up", "dart_down", "grow", "shrink"]
OVERRIDES = {"depth": 18, "width": 8, "beta_inv": 4, "fusion_kernel_size": 5, "num_frames": 8,
             "image_size": 32}


def window_probabilities(video):
    """``[windows, classes]`` from a JSON report written with ``--top_k`` = all classes."""
    return np.array([[e["probability"] for e in sorted(w["top_k"], key=lambda e: e["id"])]
                     for w in video["windows"]])


def run(*argv):
    """`predict.run` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = predict.run(["predict", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = models.build_model("slowfast_r50_8x8", num_classes=6, **OVERRIDES)
    model.save(str(root / "model.keras"))
    model.save_weights(str(root / "model.weights.h5"))
    (root / "classes.txt").write_text("\n".join(LABELS) + "\n")
    videos = root / "videos"
    videos.mkdir()
    for name, label, seconds in (("my_video", 4, 2.0), ("short", 2, 0.3)):
        frames = synthetic.render_video(label, np.random.default_rng(label), 64, int(seconds * 30))
        synthetic.write_mp4(str(videos / f"{name}.mp4"), frames)
    out = root / "out"
    out.mkdir()
    code, stdout, stderr = run(
        str(videos / "my_video.mp4"), f"--model={root / 'model.keras'}",
        f"--labels={root / 'classes.txt'}", "--stride_seconds=0.5", "--top_k=6",
        "--batch_size=3", f"--output_json={out / 'preds.json'}",
        f"--output_csv={out / 'preds.csv'}", f"--features={out / 'feats.npy'}",
        f"--visualize={out / 'preds.mp4'}", f"--timeline={out / 'timeline.png'}", "--noprogress",
    )
    assert code == 0, stderr
    return {"root": root, "model": model, "videos": videos, "out": out, "stdout": stdout}


def test_window_starts():
    # 60 frames, 16-frame windows every 15 frames: 0, 15, 30 and the window ending at frame 60.
    assert predict.window_starts(60, 16, 15) == [0, 15, 30, 44]
    assert predict.window_starts(60, 16, 44) == [0, 44]
    assert predict.window_starts(9, 16, 15) == [0]  # shorter than a window
    assert predict.window_starts(16, 16, 15) == [0]
    with pytest.raises(ValueError, match="stride"):
        predict.window_starts(60, 16, 0)


@pytest.mark.slow  # builds, saves and runs the tiny model (~30-60 s on 2 loaded cores)
def test_windows_json_csv_and_printed_report(setup):
    report = json.loads((setup["out"] / "preds.json").read_text())
    # The clip settings the model carries: 8 fast frames at rate 2, 32 px (its image_size).
    spec = report["clip_spec"]
    assert (spec["num_frames"], spec["sampling_rate"], spec["test_crop"]) == (8, 2, 32)
    assert spec["test_short_side"] == 32 and report["stride_seconds"] == 0.5
    (video,) = report["videos"]
    assert video["video"].endswith("my_video.mp4") and video["duration"] == pytest.approx(2.0)
    # 16-frame windows (8 frames x rate 2 at 30 fps = 0.533 s) every 15 frames, and the last one
    # ending at frame 60.
    spans = [(w["start"], w["end"]) for w in video["windows"]]
    np.testing.assert_allclose(spans, [(0, 16 / 30), (0.5, 31 / 30), (1.0, 46 / 30),
                                       (44 / 30, 2.0)], atol=1e-6)
    probs = window_probabilities(video)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    mean = {e["id"]: e["probability"] for e in video["video_top_k"]}
    np.testing.assert_allclose([mean[i] for i in range(6)], probs.mean(axis=0), atol=1e-6)
    assert [e["label"] for e in video["video_top_k"]] == [
        LABELS[i] for i in np.argsort(-probs.mean(axis=0), kind="stable")]
    with open(setup["out"] / "preds.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == predict.CSV_HEADER and len(rows) == 1 + 5 * 6
    assert rows[1][1:6] == ["0", "0.000", "0.533", "1", str(video["windows"][0]["top_k"][0]["id"])]
    assert rows[-1][1] == "video" and rows[-1][4] == "6"
    lines = setup["stdout"].strip().splitlines()
    assert len(lines) == 6 and "4 windows" in lines[0]
    assert lines[1].lstrip().startswith("[   0.00s -    0.53s]") and "video top-6:" in lines[-1]


@pytest.mark.slow
def test_window_probabilities_and_features_equal_the_model_on_that_clip(setup):
    """Window k is frames [15k, 15k + 16) at 30 fps through the serving test view."""
    from slowfast_tf.serving import preprocessing

    features = np.load(setup["out"] / "feats.npy")
    eval_model = setup["model"].build_eval_model()
    assert features.shape == (4, eval_model.output["features"].shape[-1]) and features.dtype == np.float32
    frames, _ = video_io.read_frames(str(setup["videos"] / "my_video.mp4"), target_fps=30,
                                     short_side=32)
    spec = ClipSpec(num_frames=8, sampling_rate=2, test_crop=32, test_short_side=32)
    report = json.loads((setup["out"] / "preds.json").read_text())["videos"][0]
    for k, start in ((0, 0), (3, 44)):
        inputs = preprocessing.preprocess_frames(frames[start : start + 16], spec)
        out = eval_model({key: v[None] for key, v in inputs.items()})
        np.testing.assert_allclose(features[k], out["features"][0], rtol=1e-4, atol=1e-5)
        got = {e["id"]: e["probability"] for e in report["windows"][k]["top_k"]}
        np.testing.assert_allclose([got[i] for i in range(6)], out["probabilities"][0], atol=1e-5)


@pytest.mark.slow  # uses the module's tiny model
def test_clip_spec_sources_and_overrides(setup, tmp_path):
    model = setup["model"]
    carried = predict.resolve_clip_spec(model)
    assert (carried.num_frames, carried.test_crop, carried.short_side) == (8, 32, 32)
    # A weights sidecar (written by the converter and train.py) wins over the preset's spec.
    weights = str(tmp_path / "w.weights.h5")
    sidecar = carried.replace(sampling_rate=1, mean=(0.5, 0.5, 0.5))
    sidecar.save(sidecar_path(weights))
    assert predict.resolve_clip_spec(model, "slowfast_r50_8x8", weights) == sidecar
    # Flags override single fields; a named spec replaces the whole spec.
    assert predict.resolve_clip_spec(model, weights=weights, target_fps=15.0) == sidecar.replace(
        target_fps=15.0)
    named = predict.resolve_clip_spec(model, name="synthetic_slowfast", num_frames=8)
    assert named == get_clip_spec("synthetic_slowfast", num_frames=8)
    with pytest.raises(predict.PredictError, match="num_frames must be an int >= 1"):
        predict.resolve_clip_spec(model, num_frames=0)


@pytest.mark.slow
def test_visualization_and_timeline_files(setup):
    with av.open(str(setup["out"] / "preds.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 60 and frames[0].shape == (320, 320, 3)  # 2 s at 30 fps, short side 320
    plain, _ = video_io.read_frames(str(setup["videos"] / "my_video.mp4"), short_side=320)
    # The top-left panel carries the labels; the bottom-right is the video itself.
    assert np.abs(frames[30][:40, :150].astype(float) - plain[30][:40, :150]).mean() > 20
    assert np.abs(frames[30][-150:-40, -100:].astype(float) - plain[30][-150:-40, -100:]).mean() < 6
    with Image.open(setup["out"] / "timeline.png") as image:
        assert image.format == "PNG" and image.size == (900, 420)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels != 255).any(axis=-1).mean() > 0.01  # axes, lines and legend were drawn


@pytest.mark.slow
def test_directory_preset_weights_gif_and_a_bad_video(setup, tmp_path):
    videos = setup["videos"]
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 20)
    try:
        code, stdout, stderr = run(
            str(videos), "--preset=slowfast_r50_8x8", f"--weights={setup['root'] / 'model.weights.h5'}",
            f"--model_overrides={json.dumps(OVERRIDES)}", "--num_classes=6",
            "--stride_seconds=0.5", "--top_k=6", f"--output_json={tmp_path / 'all.json'}",
            f"--features={tmp_path / 'f.npy'}", f"--visualize={tmp_path / 'v.gif'}",
            "--visualize_short_side=64", "--noprogress",
        )
    finally:
        (videos / "broken.mp4").unlink()
    assert code == 2
    (error,) = stderr.strip().splitlines()
    assert error.startswith(f"error: cannot read video {videos / 'broken.mp4'}: ")
    report = json.loads((tmp_path / "all.json").read_text())["videos"]
    assert [v["video"] for v in report] == [str(videos / "my_video.mp4"), str(videos / "short.mp4")]
    # Same weights through --preset/--weights as through --model: same predictions.
    single = json.loads((setup["out"] / "preds.json").read_text())["videos"][0]
    np.testing.assert_allclose(window_probabilities(report[0]), window_probabilities(single),
                               atol=1e-5)
    # 0.3 s is shorter than one window: one window, its last frame repeated.
    assert [(w["start"], w["end"]) for w in report[1]["windows"]] == [(0.0, pytest.approx(0.3))]
    assert np.load(tmp_path / "f.my_video.npy").shape[0] == 4
    assert np.load(tmp_path / "f.short.npy").shape[0] == 1
    with Image.open(tmp_path / "v.short.gif") as gif:
        assert gif.n_frames == 9 and gif.size == (64, 64)
    assert "short.mp4 (0.30 s, 1 windows)" in stdout
    # Clip flags override the model's spec (checked against the model before any decoding).
    code, _, stderr = run(str(videos / "short.mp4"), f"--model={setup['root'] / 'model.keras'}",
                          "--num_frames=16")
    assert code == 2 and stderr.strip() == (
        "error: the clip spec gives {'slow': 4, 'fast': 16} frames but the model takes "
        "{'slow': 2, 'fast': 8}; fix --num_frames (and the model's clip spec)")


def test_bad_arguments_are_one_line_errors(tmp_path):
    video = tmp_path / "v.mp4"
    synthetic.write_mp4(str(video), np.zeros((3, 16, 16, 3), np.uint8))
    cases = [
        ((), "expected one VIDEO_OR_DIR argument"),
        ((str(tmp_path / "none.mp4"), "--model=m.keras"), "no such file or directory"),
        ((str(video), "--model=m.keras", "--output_json=x.txt"), "--output_json must end in .json"),
        ((str(video), "--model=m.keras", "--stride_seconds=0"), "--stride_seconds must be > 0"),
        ((str(video),), "pass exactly one of --model"),
        ((str(video), "--model=missing.keras"), "--model must be an existing .keras file"),
        ((str(video), "--preset=nope"), "unknown --preset 'nope'"),
        ((str(video), "--preset=slowfast_r50_8x8", "--model_overrides=[1"), "not JSON"),
        ((str(video), "--no_such_flag"), "Unknown command line flag 'no_such_flag'"),
        ((str(tmp_path / "sub"), "--model=m.keras"), "no video files"),
    ]
    (tmp_path / "sub").mkdir()
    for argv, message in cases:
        code, _, stderr = run(*argv)
        assert code == 2, (argv, stderr)
        (line,) = stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, (argv, line)
