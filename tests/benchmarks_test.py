"""The benchmark scripts run at tiny size and print their tables (numbers are not asserted:
they depend on the machine; the columns and their consistency are)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*argv):
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table_rows(text):
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| slowfast")
    ]


@pytest.mark.slow
def test_bench_train_quick_prints_keras_torch_and_ratio():
    out = _run("benchmarks/bench_train.py", "--quick", "--models=slowfast_r50_4x16",
               "--plain_conv3d")
    assert "medians of 2 interleaved rounds" in out
    (row,) = _table_rows(out)
    model, crop, batch, keras_s, torch_s, ratio, gflops, keras_pct, torch_pct, ceiling = row[:10]
    plain_s, gain = row[10:]
    assert (model, crop, batch) == ("slowfast_r50_4x16", "32", "2")
    keras_s, torch_s, plain_s = float(keras_s), float(torch_s), float(plain_s)
    assert keras_s > 0 and torch_s > 0 and plain_s > 0
    assert float(ratio) == pytest.approx(torch_s / keras_s, rel=0.02, abs=0.01)
    assert float(gain) == pytest.approx(plain_s / keras_s, rel=0.02, abs=0.01)
    # The step's multiply-adds: 3x the convs' and dense layers' forward ones (forward, weight
    # and input gradients), less the stems' input gradients.
    from slowfast_tf.models import build_model
    from slowfast_tf.models.common import flops

    tiny = build_model("slowfast_r50_4x16", num_classes=400, train_crop_size=32,
                       depth=50, width=8, beta_inv=4, num_frames=8)
    layers = flops.layer_flops(tiny, image_size=32, batch_size=2, convention="paper")
    stems = [f for name, _, f in layers if name.endswith("stem_conv")]
    assert len(stems) == 2
    expected = 3 * sum(f for _, _, f in layers) - sum(stems)
    assert float(gflops) == pytest.approx(expected / 1e9, rel=1e-3)
    # % of ceiling = 2 * multiply-adds / s / the row's matmul GFLOP/s, for each framework.
    keras_pct, torch_pct = float(keras_pct.rstrip("%")), float(torch_pct.rstrip("%"))
    ceiling = float(ceiling)
    assert "float32 tf.matmul 512^2 ceiling:" in out and ceiling > 0
    assert keras_pct == pytest.approx(200 * float(gflops) / keras_s / ceiling, rel=0.03, abs=0.06)
    assert torch_pct == pytest.approx(200 * float(gflops) / torch_s / ceiling, rel=0.03, abs=0.06)


@pytest.mark.slow
def test_bench_inference_prints_matmul_ceiling_and_fraction():
    out = _run("benchmarks/bench_inference.py", "--quick", "--models=slowfast_r50_4x16",
               "--batch_sizes=1", "--notorch", "--ceiling_reps=2")
    first = float(re.search(r"matmul ceiling \(float32 tf.matmul\): ([\d.]+) GFLOP/s", out)[1])
    (row,) = _table_rows(out)
    gflops_s, fraction, ceiling = float(row[4]), row[8], float(row[9])
    assert first > 0 and ceiling > 0 and fraction.endswith("%")
    # fvcore's GFLOP/s count a multiply-add once, the matmul's 2 n^3 twice.
    assert float(fraction[:-1]) == pytest.approx(200 * gflops_s / ceiling, abs=1.0)
    # The serving model (BN folded, as export.py writes it) is what is timed by default.
    assert "slowfast_r50_4x16: built on tensorflow (BatchNorm folded)" in out


@pytest.mark.slow
def test_bench_inference_nofold_batch_norm_times_the_model_as_built():
    out = _run("benchmarks/bench_inference.py", "--quick", "--models=slowfast_r50_4x16",
               "--batch_sizes=2", "--notorch", "--ceiling_size=0", "--nofold_batch_norm")
    assert "slowfast_r50_4x16: built on tensorflow in" in out
    assert "BatchNorm folded" not in out
    (row,) = _table_rows(out)
    assert row[:2] == ["slowfast_r50_4x16", "2"] and float(row[3]) > 0
    assert row[8] == "nan%"  # --ceiling_size=0: no ceiling measured


@pytest.mark.slow
def test_bench_train_breakdown_parts_add_up():
    out = _run("benchmarks/bench_train.py", "--quick", "--models=slowfast_r50_4x16",
               "--breakdown")
    main_row, *parts = _table_rows(out)
    keras_s, torch_s, ceiling = float(main_row[3]), float(main_row[4]), float(main_row[9])
    assert [p[3] for p in parts] == ["Keras/TF", "PyTorchVideo"]
    # The convolutions' multiply-adds alone: 3x their forward ones, less the stems' input
    # gradients (no dense layer).
    from slowfast_tf.models import build_model
    from slowfast_tf.models.common import flops

    tiny = build_model("slowfast_r50_4x16", num_classes=400, train_crop_size=32,
                       depth=50, width=8, beta_inv=4, num_frames=8)
    layers = flops.layer_flops(tiny, image_size=32, batch_size=2, convention="paper")
    convs = [(n, f) for n, kind, f in layers if kind.endswith("Conv3D")]
    # Per pathway 16 bottlenecks x 3 convs + 4 shortcuts, the 2 stems and 4 fusions (s1-s4).
    assert len(convs) == 2 * (16 * 3 + 4) + 2 + 4
    expected = sum(2 * f if n.endswith("stem_conv") else 3 * f for n, f in convs)
    for part, step in zip(parts, (keras_s, torch_s)):
        step_s, convs_s, gflops, pct, bn_s, update_s, rest_s = part[4:]
        assert float(step_s) == pytest.approx(step, abs=0.0015)  # the same medians
        assert float(gflops) == pytest.approx(expected / 1e9, rel=1e-3)
        assert float(convs_s) > 0 and float(update_s) > 0
        assert float(pct.rstrip("%")) == pytest.approx(
            200 * float(gflops) / float(convs_s) / ceiling, rel=0.03, abs=0.06)
        assert float(rest_s) == pytest.approx(
            float(step_s) - float(convs_s) - float(bn_s) - float(update_s), abs=0.003)
