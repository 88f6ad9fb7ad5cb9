import logging
import stat

import keras
import pytest
import tensorflow as tf

from slowfast_tf.training import devices

GPUS = {"CPU": ["/physical_device:CPU:0"], "GPU": ["NVIDIA A100 cc 8.0", "NVIDIA A100 cc 8.0"],
        "TPU": []}


def test_visible_devices_lists_this_machines_cpu():
    found = devices.visible_devices()
    assert set(found) == {"CPU", "GPU", "TPU"}
    assert found["CPU"] and all("CPU" in name for name in found["CPU"])
    assert len(found["GPU"]) == len(tf.config.list_physical_devices("GPU"))


def test_run_context_line_names_devices_strategy_batch_and_precision(monkeypatch):
    monkeypatch.setattr(devices.tf_startup, "onednn_enabled", lambda: True)
    strategy = tf.distribute.get_strategy()
    line = devices.run_context(strategy, per_replica_batch_size=8, precision="mixed_float16",
                               devices=GPUS)
    assert line == ("devices CPU x1, GPU x2 (NVIDIA A100 cc 8.0 x2), TPU x0; strategy "
                    "_DefaultDistributionStrategy, 1 replica; batch 8 global, 8 per replica; "
                    "precision mixed_float16; CPU kernels oneDNN")


@pytest.mark.parametrize("onednn, suffix", [(False, "; CPU kernels Eigen"), (None, "")])
def test_run_context_says_which_cpu_kernels_run(monkeypatch, onednn, suffix):
    monkeypatch.setattr(devices.tf_startup, "onednn_enabled", lambda: onednn)
    line = devices.run_context(devices={"CPU": ["c"]}, precision="float32")
    assert line.endswith("; precision float32" + suffix), line


def test_run_context_splits_a_global_batch_over_replicas():
    class EightReplicas:
        num_replicas_in_sync = 8

    line = devices.run_context(EightReplicas(), global_batch_size=64,
                               devices={"CPU": ["c"], "TPU": ["t"] * 8})
    assert "strategy EightReplicas, 8 replicas; batch 64 global, 8 per replica" in line
    assert "TPU x8 (t x8)" in line
    # Without a batch or a precision: the batch is left out, Keras's global policy is reported.
    line = devices.run_context(devices={"CPU": ["c"]})
    assert "batch" not in line
    assert f"; precision {keras.mixed_precision.dtype_policy().name}" in line


def _fake_nvidia_smi(tmp_path):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\necho 'GPU 0: Fake'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


@pytest.mark.parametrize("with_smi", [True, False])
def test_log_run_context_hints_at_the_gpu_extra_when_a_driver_is_present(
        tmp_path, monkeypatch, caplog, with_smi):
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path) if with_smi else str(tmp_path))
    cpu_only = {"CPU": ["/physical_device:CPU:0"], "GPU": [], "TPU": []}
    # The absl logger itself: an earlier test (absl flag parsing) may have raised its level.
    with caplog.at_level(logging.INFO, logger="absl"):
        line = devices.log_run_context("bench.py", devices=cpu_only, precision="float32")
    assert line.startswith("bench.py: devices CPU x1, GPU x0, TPU x0; strategy ")
    messages = [r.getMessage() for r in caplog.records]
    assert line in messages
    hint = [m for m in messages if "nvidia-smi is present" in m]
    assert bool(hint) == with_smi
    if with_smi:
        assert ".[gpu]" in hint[0]
    # A machine whose GPUs TF sees gets no hint.
    caplog.clear()
    devices.log_run_context("x", devices=GPUS)
    assert not [r for r in caplog.records if "nvidia-smi" in r.getMessage()]
