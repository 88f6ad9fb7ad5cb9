"""``tools/convert_pytorchvideo_slowfast.py``: the keras-hub-style conversion check script.

Runs in a subprocess (absl flags are process-global). All runs are ``large`` (``--run-large``):
the same parity path is covered in CI by ``slowfast_tf/convert/main_test.py`` (--verify) and
``parity_test.py``. Full size at 224x224: ~45 s CPU per preset.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorchvideo") is None,
    reason="needs torch and pytorchvideo (dev extra)",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "convert_pytorchvideo_slowfast.py")


def _run(*flags, timeout=900):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=timeout, env=env
    )
    return result.returncode, result.stdout


def _check_report(out, pathways):
    assert "== preprocessing" in out
    for key in pathways:
        assert f"{key}_res5" in out
    assert "top-1 agreement: 100%; identical top-5: True" in out
    assert "top-1 match: True" in out
    assert "PASS: relative logit difference" in out


@pytest.mark.large
def test_tool_narrow_slowfast_with_weights_output(tmp_path):
    out_path = str(tmp_path / "narrow.weights.h5")
    code, out = _run(
        "--preset=slowfast_r50_8x8",
        '--model_overrides={"width": 16, "train_crop_size": 64}',
        f"--output_file={out_path}",
    )
    assert code == 0, out
    _check_report(out, ("slow", "fast"))
    assert os.path.getsize(out_path) > 1_000_000  # 2.4M float32 values


@pytest.mark.large
@pytest.mark.parametrize(
    "preset,pathways",
    [
        ("slowfast_r50_8x8", ("slow", "fast")),
        ("slowfast_r50_4x16", ("slow", "fast")),
        ("slow_r50_8x8", ("slow",)),
    ],
)
def test_tool_full_size_224(preset, pathways):
    code, out = _run(f"--preset={preset}", "--crop=224")
    assert code == 0, out
    _check_report(out, pathways)
