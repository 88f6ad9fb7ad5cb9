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

from slowfast_tf import clip_spec
from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.serving import signatures
from slowfast_tf.testing import local_server, serving_models
from slowfast_tf.testing.serving_models import LABELS, MODEL_NAME, TINY_CLIP_SPEC

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
    # No clip flag: the clip spec comes from the model.
    monkeypatch.setattr(export, "load_model", lambda f: tiny_model)
    export.main([], flag_values=parse_flags(
        f"--output_dir={base}", f"--model_name={MODEL_NAME}", f"--labels_file={labels_file}",
        "--top_k=3", "--warmup=false", f"--serving_base_path=/models/{MODEL_NAME}",
    ))
    export_dir = os.path.join(base, MODEL_NAME, "2")
    assert capsys.readouterr().out.strip() == export_dir
    assert sorted(os.listdir(os.path.join(base, MODEL_NAME))) == ["1", "2"]
    assert not os.path.exists(os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests"))
    with open(os.path.join(export_dir, "assets.extra", "export_config.json")) as f:
        info = json.load(f)
    assert info["version"] == 2 and "--top_k=3" in info["flags"]
    assert ClipSpec.from_dict(info["clip_spec"]) == TINY_CLIP_SPEC
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
        export.main([], flag_values=parse_flags("--output_dir=/tmp/x"))
    with pytest.raises(ValueError, match="--output_dir is required"):
        export.main([], flag_values=parse_flags("--preset=slowfast_r50_8x8"))


def test_clip_flags_only_override_the_model_spec(caplog):
    spec = export.clip_spec_from_flags(parse_flags(), TINY_CLIP_SPEC)
    assert spec == TINY_CLIP_SPEC  # no flag: the model's own
    flagged = export.clip_spec_from_flags(parse_flags(
        "--test_crop=48", "--mean=0.5,0.5,0.5", "--sampling_rate=4"
    ), TINY_CLIP_SPEC)
    assert flagged == TINY_CLIP_SPEC.replace(test_crop=48, mean=(0.5,) * 3, sampling_rate=4)
    # A named clip spec replaces the model's; the old spellings still work, with a warning.
    named = export.clip_spec_from_flags(parse_flags("--clip_spec=r2plus1d_torchvision_16x1"),
                                        TINY_CLIP_SPEC)
    assert (named.short_side, named.test_crop, named.mean[0]) == (128, 112, 0.43216)
    old = export.clip_spec_from_flags(parse_flags(
        "--data_preset=synthetic_slowfast", "--short_side=36", "--crop_size=32"
    ), TINY_CLIP_SPEC)
    assert old == clip_spec.get_clip_spec("synthetic_slowfast", test_short_side=36, test_crop=32)
    assert "--short_side is deprecated" in caplog.text and "--data_preset is deprecated" in caplog.text
    with pytest.raises(ValueError, match="--crop_size and --test_crop disagree"):
        export.clip_spec_from_flags(parse_flags("--crop_size=32", "--test_crop=48"), TINY_CLIP_SPEC)
    serving = export.serving_overrides(parse_flags(
        "--max_frame_pixels=100", "--max_request_frames=7", "--max_decoded_bytes=9"
    ))
    assert serving == {"top_k": 5, "max_frame_pixels": 100, "max_request_frames": 7,
                       "max_decoded_bytes": 9}
    # The limit flags default to ServingConfig's own defaults (one owner).
    defaults = export.serving_overrides(parse_flags())
    assert (defaults["max_frame_pixels"], defaults["max_request_frames"],
            defaults["max_decoded_bytes"]) == (4096 * 4096, 4096, 2**30)


def test_preset_model_carries_its_named_clip_spec():
    """--preset (+ --model_overrides): the preset's clip spec, frames following the overrides."""
    model = export.load_model(parse_flags(
        "--preset=slow_r50_8x8", "--num_classes=3", '--model_overrides={"depth": 18, "width": 8}'
    ))
    assert clip_spec.from_model(model) == clip_spec.get_clip_spec("slow_8x8")
    with pytest.raises(ValueError, match="--model_overrides must be a JSON dict"):
        export.load_model(parse_flags("--preset=slow_r50_8x8", "--model_overrides=[1]"))


def _readme_export_command():
    """The README's `python export.py --preset=...` command, continuation lines joined."""
    import shlex

    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    match = re.search(r"^python export\.py --preset=.*?(?<!\\)\n", text, flags=re.M | re.S)
    return shlex.split(match.group(0).replace("\\\n", " "))


@pytest.mark.slow
def test_readme_export_command_tiny_reads_the_sidecar(tmp_path):
    """The README's preset + converted-weights export, at tiny size (--model_overrides): no clip
    flag, the clip spec comes from the sidecar `X.clip_spec.json` the converter writes."""
    from slowfast_tf.models import build_model

    argv = _readme_export_command()
    assert argv[:2] == ["python", "export.py"] and "--preset=slowfast_r50_8x8" in argv
    overrides = {"depth": 18, "width": 8, "beta_inv": 4, "num_frames": 8, "train_crop_size": 32}
    model = build_model("slowfast_r50_8x8", num_classes=len(LABELS), **overrides)
    weights = str(tmp_path / "slowfast_r50_8x8_k400.weights.h5")
    model.save_weights(weights)
    TINY_CLIP_SPEC.save(clip_spec.sidecar_path(weights))  # as python -m slowfast_tf.convert does
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    values = {"--num_classes": str(len(LABELS)), "--weights": weights,
              "--labels_file": str(tmp_path / "labels.txt"),
              "--output_dir": str(tmp_path / "models")}
    args = [a if a.split("=")[0] not in values else f"{a.split('=')[0]}={values[a.split('=')[0]]}"
            for a in argv[2:]]
    assert {a.split("=")[0] for a in args} >= {"--preset", "--model_name", "--serving_base_path",
                                              *values}
    export.main([], flag_values=parse_flags(*args, f"--model_overrides={json.dumps(overrides)}"))
    export_dir = str(tmp_path / "models" / "slowfast" / "1")
    assert ClipSpec.load(os.path.join(export_dir, "assets", "clip_spec.json")) == TINY_CLIP_SPEC
    runner = local_server.SessionRunner(export_dir)
    try:
        reply = runner.run("metadata", {"dummy": np.zeros([1], np.int32)})
        assert signatures.clip_spec_from_metadata(reply) == TINY_CLIP_SPEC
        frames = np.random.default_rng(0).integers(0, 256, (1, 8, 72, 72, 3), np.uint8)
        got = runner.run("serving_default", {"frames": frames})["probabilities"]
    finally:
        runner.close()
    x = (frames[:, :, 4:68, 4:68].astype(np.float32) / 255.0 - 0.45) / 0.225  # 72 -> 64 crop
    expected = model.build_eval_model()({"slow": x[:, [0, 7]], "fast": x})["probabilities"]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)


def run_cli(capsys, *argv):
    """`export.cli_main` (what `python export.py` runs) -> `(exit code, stderr)`."""
    code = export.cli_main([], flag_values=parse_flags(*argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", "../outside", "a/b", ".hidden"])
def test_model_name_cannot_leave_export_base(tmp_path, capsys, name):
    base = tmp_path / "repo"
    code, err = run_cli(capsys, f"--output_dir={base}", f"--model_name={name}",
                        "--preset=slowfast_r50_8x8")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: `model_name` must be") and repr(name) in err
    assert os.listdir(tmp_path) == []  # nothing written, inside or outside the base


@pytest.mark.parametrize("version", ["-1", "-7"])
def test_version_must_be_positive(tmp_path, capsys, version):
    code, err = run_cli(capsys, f"--output_dir={tmp_path}", f"--version={version}",
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
    code, err = run_cli(capsys, f"--output_dir={folder / 'repo'}", f"--{flag}={folder / name}",
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
    tiny = {"tiny": (None, lambda name, num_classes: serving_models.tiny_classifier(num_classes))}
    monkeypatch.setattr(export, "_presets", lambda: tiny)
    code, err = run_cli(capsys, f"--output_dir={tmp_path / 'repo'}", "--preset=tiny",
                        f"--weights={tmp_path / 'other.weights.h5'}")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: Could not load --weights (") and "other.weights.h5" in err


@pytest.mark.slow  # a fresh process imports TF and Keras (~10-35 s on 2 loaded cores)
def test_command_line_random_keras_exits_2(tmp_path):
    """The real `python export.py` process: a random-bytes .keras is one line on stderr, exit 2.

    Also the deprecated `--export_base` spelling: accepted, with a warning."""
    path = tmp_path / "download.keras"
    path.write_bytes(os.urandom(1000))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "export.py", f"--model_file={path}", f"--export_base={tmp_path / 'm'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "File not found" not in proc.stderr
    assert "export.py: warning: --export_base is deprecated, use --output_dir" in proc.stderr
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
