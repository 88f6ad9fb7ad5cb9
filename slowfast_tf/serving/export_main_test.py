"""`export.py` end to end (flags -> versioned SavedModel + server files), in process."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
from absl import flags

from slowfast_tf.serving import local_server
from slowfast_tf.serving.testing_utils import LABELS, MODEL_NAME

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
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
    # Version 2 serves the same function as version 1.
    frames = np.random.default_rng(5).integers(0, 256, (1, 8, 72, 80, 3), dtype=np.uint8)
    runner = local_server.SessionRunner(export_dir)
    try:
        np.testing.assert_allclose(
            runner.run("serving_default", {"frames": frames})["probabilities"],
            session_runner.run("serving_default", {"frames": frames})["probabilities"],
            rtol=1e-6, atol=1e-7,
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
    tv = export.config_overrides(parse_flags("--preset=r2plus1d_r18_torchvision"))
    assert (tv["short_side"], tv["crop_size"], tv["sampling_rate"]) == (128, 112, 1)
    assert tv["mean"] == (0.43216, 0.394666, 0.37645)
    flagged = export.config_overrides(parse_flags(
        "--preset=slowfast_r50_8x8", "--crop_size=224", "--mean=0.5,0.5,0.5", "--top_k=1"
    ))
    assert (flagged["short_side"], flagged["crop_size"], flagged["top_k"]) == (256, 224, 1)
    assert flagged["mean"] == (0.5, 0.5, 0.5)
    assert export.config_overrides(parse_flags("--crop_size=160"))["short_side"] == 160
