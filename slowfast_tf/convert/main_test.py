"""``python -m slowfast_tf.convert``: conversion, --verify report, fine-tuning head, errors.

Uses a narrow (width 16) SlowFast R50 8x8 at a 64x64 crop so the CLI, the PTV reference and
the verify report all run in seconds.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from slowfast_tf.convert import __main__ as cli
from slowfast_tf.convert import (
    checkpoints,
    keras_to_pyslowfast_state,
    torch_reference,
)
from slowfast_tf.testing import parity_fixtures

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorchvideo") is None,
    reason="CLI tests build PyTorchVideo checkpoints (dev extra)",
)

NARROW = ['--model_overrides={"width": 16, "train_crop_size": 64}']


@pytest.fixture(scope="module")
def ptv_checkpoint(tmp_path_factory):
    arch = torch_reference.ReferenceArch(width=16, head_pool_hw=2)
    rng = np.random.default_rng(0)
    inputs = {
        "slow": rng.standard_normal((1, 8, 64, 64, 3), np.float32),
        "fast": rng.standard_normal((1, 32, 64, 64, 3), np.float32),
    }
    model = parity_fixtures.make_reference(arch, inputs, seed=4)
    path = str(tmp_path_factory.mktemp("ckpt") / "SLOWFAST_8x8_R50_narrow.pyth")
    return parity_fixtures.write_ptv_checkpoint(model, path)


def test_convert_and_verify(ptv_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "sf.weights.h5")
    argv = ["--source", "pytorchvideo", ptv_checkpoint, "--preset", "slowfast_r50_8x8"]
    assert cli.main(argv + ["--output_file", out, "--verify"] + NARROW) == 0
    printed = capsys.readouterr().out
    assert "checkpoint classes: 400" in printed
    assert "Converted 552 tensors" in printed and "ignored 110" in printed
    for name in ("slow_stem", "fast_stem", "slow_res2", "fast_res4", "slow_res5", "logits"):
        assert f"\n{name} " in printed, name
    assert "top-1 agreement: 100%; identical top-5: True" in printed
    assert "Parity OK" in printed
    # The weights file holds exactly the checkpoint's tensors (BN statistics included).
    from slowfast_tf.models import build_model

    fresh = build_model("slowfast_r50_8x8", num_classes=400, width=16, train_crop_size=64)
    fresh.load_weights(out)
    saved = keras_to_pyslowfast_state(fresh)
    expected, _, _ = checkpoints.read_checkpoint(ptv_checkpoint, "pytorchvideo")
    assert saved.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(saved[name], value, err_msg=name)
    # The sidecar carries the preset's clip spec (export.py --weights reads it).
    from slowfast_tf.clip_spec import CLIP_SPECS, load_sidecar

    assert load_sidecar(out) == CLIP_SPECS["slowfast_8x8"]
    assert os.path.exists(str(tmp_path / "sf.clip_spec.json"))


def test_num_classes_drops_the_head(ptv_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "ft.weights.h5")
    argv = ["--source", "pytorchvideo", ptv_checkpoint, "--preset", "slowfast_r50_8x8", "--output_file", out]
    assert cli.main(argv + ["--num_classes", "10", "--verify"] + NARROW) == 0
    printed = capsys.readouterr().out
    assert "Checkpoint head has 400 classes, model has 10" in printed
    assert "left at its initialisation" in printed
    assert "logits: not compared" in printed and "Parity OK" in printed
    assert os.path.exists(out)


def test_deprecated_spellings_still_convert(ptv_checkpoint, tmp_path, capsys):
    # One release of grace: --from, --out, --num-classes and Python-literal --override.
    out = str(tmp_path / "old.weights.h5")
    argv = ["--from", "pytorchvideo", ptv_checkpoint, "--preset", "slowfast_r50_8x8", "--out", out,
            "--num-classes", "10", "--override", "width=16", "--override=train_crop_size=64"]  # fmt: skip
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    for old, new in [("--from", "--source"), ("--out", "--output_file"),
                     ("--num-classes", "--num_classes"), ("--override KEY=VALUE", "--model_overrides")]:
        assert f"warning: {old} is deprecated, use {new}" in err
    assert os.path.exists(out)


def test_mismatched_architecture_lists_shapes(tmp_path, capsys):
    # A 4x16 checkpoint (fusion kernel 5, stride 8) into the 8x8 preset (kernel 7).
    arch = torch_reference.ReferenceArch(
        width=16, alpha=8, fusion_kernel=5, slow_frames=4, head_pool_hw=2
    )
    path = parity_fixtures.write_ptv_checkpoint(
        torch_reference.build_ptv_model(arch), str(tmp_path / "4x16.pyth")
    )
    out = str(tmp_path / "x.weights.h5")
    argv = ["--source", "pytorchvideo", path, "--preset", "slowfast_r50_8x8", "--output_file", out]
    assert cli.main(argv + NARROW) == 2
    err = capsys.readouterr().err
    assert "shape mismatches (checkpoint, in Keras layout -> Keras) (4)" in err
    assert "s1_fuse.conv_f2s.weight (4, 2, 5, 1, 1)" in err
    assert "(5, 1, 1, 2, 4) vs (7, 1, 1, 2, 4)" in err
    assert not os.path.exists(out)


def test_bad_arguments_fail_with_one_message(ptv_checkpoint, tmp_path, capsys):
    base = ["--source", "pytorchvideo", ptv_checkpoint]
    assert cli.main(base + ["--preset", "slowfast_r50_8x8", "--output_file", str(tmp_path / "w.h5")]) == 2
    assert "--output_file must end with '.weights.h5'" in capsys.readouterr().err
    out = str(tmp_path / "w.weights.h5")
    assert cli.main(base + ["--preset", "slowfast_r9_8x8", "--output_file", out]) == 2
    assert "slowfast_r9_8x8" in capsys.readouterr().err
    assert cli.main(base + ["--preset", "slowfast_r50_8x8", "--output_file", out, "--model_overrides=x"]) == 2
    assert "--model_overrides must be a JSON object" in capsys.readouterr().err
    assert cli.main(base + ["--preset", "slowfast_r50_8x8", "--output_file", out, "--override", "x"]) == 2
    assert "--override must look like KEY=VALUE" in capsys.readouterr().err
    assert cli.main(base + ["--preset", "slowfast_r50_8x8", "--output_file", out, "--bogus"]) == 2
    assert capsys.readouterr().err.startswith("error: Unknown command line flag 'bogus'")
    assert cli.main(base) == 2  # the required flags
    assert "must have a value other than None" in capsys.readouterr().err


def test_module_entry_point_reports_corrupted_file(tmp_path):
    bad = tmp_path / "SLOWFAST_8x8_R50.pyth"
    bad.write_bytes(b"PK\x03\x04 truncated download")
    result = subprocess.run(
        [sys.executable, "-m", "slowfast_tf.convert", "--source", "pytorchvideo", str(bad)]
        + ["--preset", "slowfast_r50_8x8", "--output_file", str(tmp_path / "w.weights.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0] and "not a readable PyTorch checkpoint" in lines[0]


def test_skip_moves_matching_names_to_ignored():
    state = {"s1.pathway0_stem.conv.weight": 1, "head.projection.weight": 2}
    unmapped = ["extra_blob_w", "other"]
    state, unmapped, ignored = cli._apply_skips(
        ["extra_.*", r"head\.projection\..*"], state, unmapped, ["lr"]
    )
    assert state == {"s1.pathway0_stem.conv.weight": 1}
    assert unmapped == ["other"]
    assert ignored == ["lr", "extra_blob_w", "head.projection.weight"]


@pytest.mark.slow
def test_non_finite_weights_are_refused_unless_allowed(ptv_checkpoint, tmp_path, capsys):
    import torch

    state = torch.load(ptv_checkpoint, weights_only=True)
    weights = state["model_state"] if "model_state" in state else state
    name = next(n for n in sorted(weights) if n.endswith("conv.weight"))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    broken = str(tmp_path / "broken.pyth")
    torch.save(state, broken)
    out = str(tmp_path / "w.weights.h5")
    argv = ["--source", "pytorchvideo", broken, "--preset", "slowfast_r50_8x8", "--output_file", out]
    assert cli.main(argv + NARROW) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN/Inf" in err[0] and "(3 of " in err[0], err
    assert "--allow_non_finite" in err[0] and not os.path.exists(out)
    # The library refuses too (the check runs on exactly the tensors it assigns) ...
    from slowfast_tf.convert import ConversionError, convert_checkpoint
    from slowfast_tf.models import build_model

    model = build_model("slowfast_r50_8x8", num_classes=400, width=16, train_crop_size=64)
    with pytest.raises(ConversionError, match=r"NaN/Inf values: s1\.pathway"):
        convert_checkpoint(broken, "pytorchvideo", model)
    # ... and converts with a loud WARNING when explicitly allowed.
    report = convert_checkpoint(broken, "pytorchvideo", model, allow_non_finite=True)
    assert report.messages[0].startswith("WARNING: loaded a broken checkpoint: 1 tensor(s)")
    assert "WARNING" in str(report)


@pytest.mark.slow
def test_kill_while_writing_out_keeps_the_previous_file(ptv_checkpoint, tmp_path):
    # The process dies (SIGKILL) halfway through writing the weights: the old --output_file survives
    # byte for byte and no partial file is left next to it.
    out = tmp_path / "sf.weights.h5"
    out.write_bytes(b"previous weights")
    code = (
        "import os, signal, sys, keras\n"
        "def dying_save(self, path, *args, **kwargs):\n"
        "    with open(path, 'wb') as f:\n"
        "        f.write(b'half')\n"
        "        f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "keras.Model.save_weights = dying_save\n"
        "from slowfast_tf.convert.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["--source", "pytorchvideo", ptv_checkpoint, "--preset", "slowfast_r50_8x8"]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv, "--output_file", str(out), *NARROW],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == -9, result.stderr[-2000:]
    assert out.read_bytes() == b"previous weights"
    # Only a hidden temp file may remain (the next run of any writer overwrites it).
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [out.name]


def test_unwritable_out_is_one_line_before_any_work(ptv_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["--source", "pytorchvideo", ptv_checkpoint, "--preset", "slowfast_r50_8x8"]
    assert cli.main(argv + ["--output_file", str(blocker / "w.weights.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write --output_file"), err
    (tmp_path / "dir.weights.h5").mkdir()
    assert cli.main(argv + ["--output_file", str(tmp_path / "dir.weights.h5")]) == 2
    assert "--output_file is a directory" in capsys.readouterr().err
