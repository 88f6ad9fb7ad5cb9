"""GPU install path: the `gpu` extra, scripts/setup.sh's choice of extras, gpu_check.sh's steps,
and train.py's --require_gpu exit."""

import os
import socket
import stat
import subprocess
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    if tomllib is None:
        pytest.skip("tomllib needs Python >= 3.11")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_gpu_extra_pins_the_same_tensorflow_as_the_core():
    project = _pyproject()["project"]
    core = [d for d in project["dependencies"] if d.startswith("tensorflow==")]
    assert project["optional-dependencies"]["gpu"] == [
        core[0].replace("tensorflow==", "tensorflow[and-cuda]==")]


def _index_reachable(host="pypi.org"):
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_gpu_extra_resolves_with_pip_dry_run(tmp_path):
    if not _index_reachable():
        pytest.skip("the package index is unreachable")
    requirement = _pyproject()["project"]["optional-dependencies"]["gpu"][0]
    report = tmp_path / "report.json"
    # The extra against the installed stack: pip resolves only what it adds (the CUDA wheels).
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
         requirement], capture_output=True, text=True, timeout=600)
    if out.returncode and ("connection" in out.stderr.lower() or "network" in out.stderr.lower()):
        pytest.skip(f"the package index is unreachable: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    names = {i["metadata"]["name"] for i in json.loads(report.read_text())["install"]}
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= names, names


def _extras(tmp_path, args, device=None, smi_exit=None):
    """Runs `setup.sh --print-extras` with a fake nvidia-smi (exiting `smi_exit`) or none."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if smi_exit is None:
        smi.unlink(missing_ok=True)
    else:
        smi.write_text(f"#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\nexit {smi_exit}\n")
        smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if device is not None:
        env["SLOWFAST_TF_DEVICE"] = device
    out = subprocess.run(["bash", "scripts/setup.sh", "--print-extras", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout.strip(), out.stderr.strip()


@pytest.mark.parametrize("args, device, smi_exit, expected", [
    (["dev"], None, None, "dev"),          # no driver: CPU stack, as before
    ([], None, None, ""),
    (["dev"], None, 0, "dev,gpu"),         # a working nvidia-smi adds the gpu extra
    ([], None, 0, "gpu"),
    (["dev"], None, 9, "dev"),             # nvidia-smi present but failing: no GPU usable
    (["dev"], "cpu", 0, "dev"),            # the variable overrides the guess ...
    (["dev"], "gpu", None, "dev,gpu"),
    (["dev,gpu"], "gpu", 0, "dev,gpu"),    # ... and never duplicates it
    (["dev,gpu"], "cpu", 0, "dev,gpu"),    # extras named on the command line are kept
    (["dev"], "auto", 0, "dev,gpu"),
])
def test_setup_picks_the_gpu_extra(tmp_path, args, device, smi_exit, expected):
    assert _extras(tmp_path, args, device, smi_exit) == (0, expected, "")


def test_setup_rejects_an_unknown_device(tmp_path):
    rc, out, err = _extras(tmp_path, ["dev"], "tpu")
    assert rc == 2 and out == ""
    assert err == "setup.sh: error: SLOWFAST_TF_DEVICE must be cpu, gpu or auto. Received: tpu"


def test_gpu_check_dry_run_lists_every_step(tmp_path):
    env = {**os.environ, "GPU_CHECK_DIR": str(tmp_path / "w")}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if line.startswith("=== ")]
    assert [s.split()[1].rstrip(":") for s in steps] == [
        "setup", "devices", "parity", "data", "train_1_epoch", "bench_inference", "bench_train"]
    text = out.stdout
    assert "SLOWFAST_TF_DEVICE=gpu bash scripts/setup.sh dev" in text
    assert "require_gpu=True" in text and "--require_gpu" in text
    assert "NVIDIA_TF32_OVERRIDE=0" in text and "parity_test.py" in text
    assert "train.py --flagfile=configs/synthetic_slowfast.flags" in text and "--epochs=1" in text
    assert "bench_inference.py --batch_sizes=1,8" in text
    has_bench_train = os.path.exists(os.path.join(REPO, "benchmarks", "bench_train.py"))
    assert ("bench_train.py is not in this checkout" in text) != has_bench_train
    # Time limits add up to the 10-minute budget.
    limits = [int(s.split("(limit ")[1].split("s)")[0]) for s in steps if "(limit " in s]
    assert sum(limits) <= 600, limits
    # One table, one row per step; nothing was written.
    assert text.count("| dry-run |") + text.count("| skipped |") == 7
    assert not (tmp_path / "w").exists()


def test_gpu_check_rejects_unknown_arguments():
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "gpu_check.sh: error: unknown argument. Received: --fast"


@pytest.mark.slow
def test_train_require_gpu_exits_2_with_one_line_on_a_cpu_machine(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "train.py", "--fake_data", "--model_dir", str(tmp_path),
         "--require_gpu", "--strategy=mirrored"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "Received: strategy='mirrored', GPUs=0" in errors[0]
    assert "Traceback" not in out.stderr
    assert not os.listdir(tmp_path)  # stopped before writing anything


@pytest.mark.large
def test_gpu_check_quick_runs_every_step_on_this_machine(tmp_path):
    # Tiny sizes on whatever device is here (CPU included); minutes on a loaded 2-core CPU.
    env = {**os.environ, "PYTHONPATH": REPO, "PYTHON": sys.executable,
           "GPU_CHECK_DIR": str(tmp_path), "GPU_CHECK_TIMEOUT_SCALE": "30"}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--quick", "--no-setup"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    for step in ("devices", "parity", "data", "train_1_epoch", "bench_inference"):
        assert f"| {step} | ok |" in summary, summary
    assert "| bench_train | ok |" in summary or "| bench_train | skipped |" in summary
    assert "| slowfast_r50_4x16 | 1 |" in summary  # bench_inference's own table
