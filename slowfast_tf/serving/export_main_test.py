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


@pytest.mark.slow
def test_export_main_adds_version_2(tiny_model, serving_export, session_runner, tmp_path,
                                    monkeypatch, capsys):
    # A repository that already holds version 1 (a copy of the session's export).
    base = str(tmp_path / "repo")
    shutil.copytree(serving_export[0].export_dir, os.path.join(base, MODEL_NAME, "1"))
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    # Reuse the session's model instead of building a preset (a weights file would load into it).
    monkeypatch.setattr(export, "load_model", lambda: tiny_model)
    flags.FLAGS.unparse_flags()
    flags.FLAGS([
        "export.py", f"--export_base={base}", f"--model_name={MODEL_NAME}",
        f"--labels_file={labels_file}", "--short_side=72", "--crop_size=64", "--top_k=3",
        "--warmup=false", f"--serving_base_path=/models/{MODEL_NAME}",
    ])
    try:
        export.main([])
    finally:
        flags.FLAGS.unparse_flags()
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
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["export.py", "--export_base=/tmp/x"])
    try:
        with pytest.raises(ValueError, match="exactly one of --preset or --model_file"):
            export.main([])
    finally:
        flags.FLAGS.unparse_flags()
