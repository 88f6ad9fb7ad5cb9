"""Kill train.py mid-run after a checkpoint, restart it, and check it resumes (not from scratch)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH = 2
EPOCHS = 8


def _command(model_dir):
    return [
        sys.executable, os.path.join(REPO, "train.py"),
        "--model=slow_r50_8x8", "--data_preset=synthetic_slow",
        '--data_overrides={"train_crop": 32, "test_crop": 32, "train_jitter_scales": [32, 32]}',
        '--model_overrides={"depth": 18, "width": 4}',
        "--fake_data", "--num_classes=3", f"--epochs={EPOCHS}", "--warmup_epochs=1",
        f"--steps_per_epoch={STEPS_PER_EPOCH}", "--batch_size=2", "--verbose=0",
        "--notensorboard", f"--model_dir={model_dir}",
    ]


def _read_states(model_dir):
    with open(os.path.join(model_dir, "train_state.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_resume_after_kill_continues_from_saved_epoch_and_step(tmp_path):
    model_dir = str(tmp_path / "run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    metadata = os.path.join(model_dir, "backup", "training_metadata.json")
    first = subprocess.Popen(_command(model_dir), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while True:
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint within 10 minutes"
            try:
                with open(metadata) as f:
                    if json.load(f)["epoch"] >= 2:
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL

    with open(metadata) as f:
        saved_epoch = json.load(f)["epoch"]
    assert 2 <= saved_epoch < EPOCHS, saved_epoch
    assert not os.path.exists(os.path.join(model_dir, "final.weights.h5"))

    second = subprocess.run(_command(model_dir), cwd=REPO, env=env, capture_output=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    states = _read_states(model_dir)
    begins = [s for s in states if s["event"] == "train_begin"]
    assert [b["epoch"] for b in begins] == [0, saved_epoch]
    # The optimizer (and so the LR schedule) resumed at the saved step, not at 0.
    assert begins[1]["step"] == saved_epoch * STEPS_PER_EPOCH
    epochs_after_restart = [s["epoch"] for s in states[states.index(begins[1]):]
                            if s["event"] == "epoch_end"]
    assert epochs_after_restart == list(range(saved_epoch + 1, EPOCHS + 1))
    assert states[-1]["step"] == EPOCHS * STEPS_PER_EPOCH
    assert os.path.exists(os.path.join(model_dir, "final.weights.h5"))
