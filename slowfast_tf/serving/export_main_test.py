"""`export.py` end to end (flags -> versioned SavedModel + server files), in process."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from absl import flags

from slowfast_tf.serving import local_server, testing_utils
from slowfast_tf.serving.testing_utils import LABELS, MODEL_NAME

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
import export  # noqa: E402  (top-level absl script)


def parse_flags(*argv):
    """export.py's flags on a private FlagValues (no clash with other scripts' global flags)."""
    flag_values = flags.FlagValues()
    export.define_flags(flag_values)
    flag_values(["export.py", *argv])
    return flag_values


@pytest.mark.slow
def test_export_main_adds_version_2(tiny_model, serving_export, session_runner, tmp_path,
                                    monkeypatch, capsys):
    # A repository that already holds version 1 (a copy of the session's export).
    base = str(tmp_path / "repo")
    shutil.copytree(serving_export[0].export_dir, os.path.join(base, MODEL_NAME, "1"))
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    # Reuse the session's model instead of building a preset (a weights file would load into it).
    monkeypatch.setattr(export, "load_model", lambda f: tiny_model)
    export.main([], flag_values=parse_flags(
        f"--export_base={base}", f"--model_name={MODEL_NAME}", f"--labels_file={labels_file}",
        "--short_side=72", "--crop_size=64", "--top_k=3", "--warmup=false",
        f"--serving_base_path=/models/{MODEL_NAME}",
    ))
    export_dir = os.path.join(base, MODEL_NAME, "2")
    assert capsys.readouterr().out.strip() == export_dir
    assert sorted(os.listdir(os.path.join(base, MODEL_NAME))) == ["1", "2"]
    assert not os.path.exists(os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests"))
    with open(os.path.join(export_dir, "assets.extra", "export_config.json")) as f:
        info = json.load(f)
    assert info["version"] == 2 and info["crop_size"] == 64 and "--short_side=72" in info["flags"]
    with open(os.path.join(base, "models.config")) as f:
        text = f.read()
    assert text.count("name:") == 1 and f'base_path: "/models/{MODEL_NAME}"' in text
    # Version 2 serves the same function as version 1 (up to float32 rounding: export.py folds the
    # BatchNorms into the convs by default, the session's version 1 is unfolded).
    frames = np.random.default_rng(5).integers(0, 256, (1, 8, 72, 80, 3), dtype=np.uint8)
    runner = local_server.SessionRunner(export_dir)
    try:
        np.testing.assert_allclose(
            runner.run("serving_default", {"frames": frames})["probabilities"],
            session_runner.run("serving_default", {"frames": frames})["probabilities"],
            rtol=0, atol=1e-5,
        )
    finally:
        runner.close()


def test_export_main_needs_one_model_source():
    with pytest.raises(ValueError, match="exactly one of --preset or --model_file"):
        export.main([], flag_values=parse_flags("--export_base=/tmp/x"))
    with pytest.raises(ValueError, match="--export_base is required"):
        export.main([], flag_values=parse_flags("--preset=slowfast_r50_8x8"))


def test_config_overrides_follow_the_preset():
    sf = export.config_overrides(parse_flags("--preset=slowfast_r50_8x8"))
    assert (sf["short_side"], sf["crop_size"], sf["sampling_rate"]) == (256, 256, 2)
    assert sf["mean"] == (0.45, 0.45, 0.45) and sf["target_fps"] == 30.0
    # The limit flags default to ServingConfig's own defaults (one owner).
    assert (sf["max_frame_pixels"], sf["max_request_frames"], sf["max_decoded_bytes"]) == (
        4096 * 4096, 4096, 2**30
    )
    tv = export.config_overrides(parse_flags("--preset=r2plus1d_r18_torchvision"))
    assert (tv["short_side"], tv["crop_size"], tv["sampling_rate"]) == (128, 112, 1)
    assert tv["mean"] == (0.43216, 0.394666, 0.37645)
    flagged = export.config_overrides(parse_flags(
        "--preset=slowfast_r50_8x8", "--crop_size=224", "--mean=0.5,0.5,0.5", "--top_k=1"
    ))
    assert (flagged["short_side"], flagged["crop_size"], flagged["top_k"]) == (256, 224, 1)
    assert flagged["mean"] == (0.5, 0.5, 0.5)
    assert export.config_overrides(parse_flags("--crop_size=160"))["short_side"] == 160
    limits = export.config_overrides(parse_flags(
        "--max_frame_pixels=100", "--max_request_frames=7", "--max_decoded_bytes=9"
    ))
    assert (limits["max_frame_pixels"], limits["max_request_frames"],
            limits["max_decoded_bytes"]) == (100, 7, 9)


def run_cli(capsys, *argv):
    """`export.cli_main` (what `python export.py` runs) -> `(exit code, stderr)`."""
    code = export.cli_main([], flag_values=parse_flags(*argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", "../outside", "a/b", ".hidden"])
def test_model_name_cannot_leave_export_base(tmp_path, capsys, name):
    base = tmp_path / "repo"
    code, err = run_cli(capsys, f"--export_base={base}", f"--model_name={name}",
                        "--preset=slowfast_r50_8x8")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: `model_name` must be") and repr(name) in err
    assert os.listdir(tmp_path) == []  # nothing written, inside or outside the base


@pytest.mark.parametrize("version", ["-1", "-7"])
def test_version_must_be_positive(tmp_path, capsys, version):
    code, err = run_cli(capsys, f"--export_base={tmp_path}", f"--version={version}",
                        "--preset=slowfast_r50_8x8")
    assert code == 2 and "`version` must be a positive integer" in err and err.count("\n") == 1


def write_files(tmp_path):
    paths = {
        "random.keras": os.urandom(4096),
        "random.weights.h5": os.urandom(4096),
        "model.h5": b"",
        "model.weights.h5.txt": b"",
    }
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "not_a_model.keras", "w") as zf:
        zf.writestr("notes.txt", "hello")
    return tmp_path


@pytest.mark.parametrize(
    "flag,name,match",
    [
        ("model_file", "random.keras", "--model_file is not a .keras file (not a zip archive"),
        ("model_file", "missing.keras", "--model_file does not exist"),
        ("model_file", "model.h5", "--model_file must end with .keras"),
        ("model_file", "not_a_model.keras", "Could not load --model_file ("),
        ("weights", "missing.weights.h5", "--weights does not exist"),
        ("weights", "random.weights.h5", "--weights is not a .weights.h5 file (not a HDF5 file"),
        ("weights", "model.weights.h5.txt", "--weights must end with .weights.h5 or .keras"),
    ],
)
def test_bad_model_files_are_one_line_exit_2(tmp_path, capsys, flag, name, match):
    folder = write_files(tmp_path)
    source = [] if flag == "model_file" else ["--preset=slowfast_r50_8x8"]
    code, err = run_cli(capsys, f"--export_base={folder / 'repo'}", f"--{flag}={folder / name}",
                        *source)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0] and str(folder / name) in lines[0], lines[0]
    assert "File not found" not in err and not (folder / "repo").exists()


def test_weights_of_another_model_are_one_line(tmp_path, capsys, monkeypatch):
    """A real HDF5 file that is not this model's weights: Keras' error, on one line."""
    import h5py

    with h5py.File(tmp_path / "other.weights.h5", "w") as h5:
        h5.create_dataset("x", data=[1.0])
    tiny = {"tiny": (None, lambda name, num_classes: testing_utils.tiny_classifier(num_classes))}
    monkeypatch.setattr(export, "_presets", lambda: tiny)
    code, err = run_cli(capsys, f"--export_base={tmp_path / 'repo'}", "--preset=tiny",
                        f"--weights={tmp_path / 'other.weights.h5'}")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: Could not load --weights (") and "other.weights.h5" in err


@pytest.mark.slow  # a fresh process imports TF and Keras (~10-35 s on 2 loaded cores)
def test_command_line_random_keras_exits_2(tmp_path):
    """The real `python export.py` process: a random-bytes .keras is one line on stderr, exit 2."""
    path = tmp_path / "download.keras"
    path.write_bytes(os.urandom(1000))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "export.py", f"--model_file={path}", f"--export_base={tmp_path / 'm'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "File not found" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"error: --model_file is not a .keras file (not a zip archive: corrupt or "
                    f"truncated download?). Received: --model_file='{path}'")


@pytest.mark.slow  # a fresh process imports TF and Keras
def test_helpfull_lists_the_request_limits():
    """`python export.py --helpfull` (serving README) prints each limit flag with its default."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "export.py", "--helpfull"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)
    text = " ".join(proc.stdout.split())
    for flag, default in [("max_frame_pixels", 16777216), ("max_request_frames", 4096),
                          ("max_decoded_bytes", 1073741824)]:
        assert re.search(rf"--{flag}: [^-]*\(default: '{default}'\)", text), (flag, text[-3000:])
