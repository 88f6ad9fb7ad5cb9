"""Two-process MultiWorkerMirroredStrategy training on loopback (TF_CONFIG with free ports)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_in_sync(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    model_dir = str(tmp_path / "run")
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3",
               "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": REPO}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "train_multi_worker_worker.py"),
             model_dir, str(tmp_path / f"worker{index}.npz")],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ))
    errors = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        errors.append(err.decode()[-3000:])
    assert [p.returncode for p in procs] == [0, 0], errors

    results = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    assert np.all(np.isfinite(results[0]["loss"])) and len(results[0]["loss"]) == 2
    # Step logs are averaged over the workers, so both report the same losses.
    np.testing.assert_allclose(results[0]["loss"], results[1]["loss"], rtol=1e-6)
    # Trainable weights only: BN moving statistics are per-worker (unsynchronised BN sees
    # different data on each worker), as PySlowFast's per-GPU BN statistics.
    weights = [k for k in results[0].files if k.startswith("w")]
    assert len(weights) == 5  # conv kernel, BN gamma and beta, head kernel and bias
    for key in weights:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    # Only the chief (worker 0) writes checkpoints and logs into model_dir.
    assert os.path.exists(os.path.join(model_dir, "final.weights.h5"))
    with open(os.path.join(model_dir, "train_state.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [0, 2, 4]
