"""What an entry point runs on, said in one log line.

Every entry point (``train.py``, ``export.py``, the benchmarks) calls `log_run_context` once at
start, so a user sees at a glance whether TensorFlow found the GPUs/TPU, which strategy was built,
how the batch is split, which dtype policy is active and whether the CPU runs oneDNN's kernels
(see `slowfast_tf.utils.tf_startup.prefer_onednn`) or TF's Eigen ones::

    train.py: devices CPU x1, GPU x2 (NVIDIA A100-SXM4-40GB cc 8.0 x2); strategy MirroredStrategy,
    2 replicas; batch 16 global, 8 per replica; precision mixed_float16; CPU kernels oneDNN

The library side (device discovery, GPU compute capability) lives here so `strategy.py` can
choose a strategy and a precision from the same facts.
"""

from __future__ import annotations

import shutil

import keras
import tensorflow as tf
from absl import logging

from slowfast_tf.utils import tf_startup

DEVICE_TYPES = ("CPU", "GPU", "TPU")


def visible_devices() -> dict[str, list[str]]:
    """Devices TensorFlow sees, by type: ``{"CPU": [...], "GPU": [...], "TPU": [...]}``.

    GPU entries carry the model name and compute capability when TensorFlow reports them
    (``"NVIDIA A100-SXM4-40GB cc 8.0"``); TPU cores are logical devices, visible once the TPU
    system is initialised (after `strategy.build_strategy`).
    """
    out = {kind: [] for kind in DEVICE_TYPES}
    for device in tf.config.list_physical_devices("CPU"):
        out["CPU"].append(device.name)
    for device in tf.config.list_physical_devices("GPU"):
        name, capability = gpu_details(device)
        label = name or device.name
        if capability is not None:
            label += f" cc {capability[0]}.{capability[1]}"
        out["GPU"].append(label)
    try:
        tpus = tf.config.list_logical_devices("TPU")
    except RuntimeError:  # the TPU system can be in a state where listing raises
        tpus = []
    out["TPU"] = [device.name for device in tpus]
    return out


def gpu_details(device) -> tuple[str | None, tuple[int, int] | None]:
    """``(name, (major, minor))`` of a physical GPU, ``None`` for what TF does not report."""
    try:
        details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError):
        return None, None
    capability = details.get("compute_capability")
    return details.get("device_name"), tuple(capability) if capability else None


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """Compute capability of each visible GPU (``None`` where unknown), in device order."""
    return [gpu_details(d)[1] for d in tf.config.list_physical_devices("GPU")]


def nvidia_smi_present() -> bool:
    """True when ``nvidia-smi`` is on PATH: the machine has an NVIDIA driver."""
    return shutil.which("nvidia-smi") is not None


def _summarise(devices: dict[str, list[str]]) -> str:
    parts = []
    for kind in DEVICE_TYPES:
        names = devices.get(kind, [])
        if kind != "CPU" and names:
            counts = {}
            for name in names:
                counts[name] = counts.get(name, 0) + 1
            detail = ", ".join(n if c == 1 else f"{n} x{c}" for n, c in counts.items())
            parts.append(f"{kind} x{len(names)} ({detail})")
        else:
            parts.append(f"{kind} x{len(names)}")
    return ", ".join(parts)


def run_context(
    strategy: tf.distribute.Strategy | None = None,
    *,
    global_batch_size: int | None = None,
    per_replica_batch_size: int | None = None,
    precision: str | None = None,
    devices: dict[str, list[str]] | None = None,
) -> str:
    """The one-line description that `log_run_context` logs (see the module docstring).

    Args:
        strategy: the strategy in use; default: the current one (``tf.distribute.get_strategy()``).
        global_batch_size: clips per step over all replicas, if the entry point has one.
        per_replica_batch_size: clips per replica; derived from the global batch when omitted.
        precision: the dtype policy name; default: Keras's global policy.
        devices: `visible_devices()` output (tests pass their own).
    """
    strategy = strategy or tf.distribute.get_strategy()
    devices = visible_devices() if devices is None else devices
    replicas = strategy.num_replicas_in_sync
    line = (f"devices {_summarise(devices)}; strategy {type(strategy).__name__}, "
            f"{replicas} replica{'s' if replicas != 1 else ''}")
    if global_batch_size is not None or per_replica_batch_size is not None:
        if global_batch_size is None:
            global_batch_size = per_replica_batch_size * replicas
        if per_replica_batch_size is None:
            per_replica_batch_size = global_batch_size // replicas
        line += f"; batch {global_batch_size} global, {per_replica_batch_size} per replica"
    precision = precision or keras.mixed_precision.dtype_policy().name
    line += f"; precision {precision}"
    onednn = tf_startup.onednn_enabled()
    if onednn is not None:
        line += f"; CPU kernels {'oneDNN' if onednn else 'Eigen'}"
    return line


def log_run_context(entry_point: str, strategy: tf.distribute.Strategy | None = None, *,
                    to_stdout: bool = False, **kwargs) -> str:
    """Logs ``"<entry_point>: <run_context(...)>"`` at INFO (prints it instead with
    ``to_stdout=True``, for scripts whose results go to stdout) and returns it.

    Also warns when ``nvidia-smi`` exists but TensorFlow sees no GPU: the usual cause is a
    CPU-only TensorFlow (install the ``gpu`` extra).
    """
    devices = kwargs.pop("devices", None)
    devices = visible_devices() if devices is None else devices
    line = f"{entry_point}: {run_context(strategy, devices=devices, **kwargs)}"
    if to_stdout:
        print(line, flush=True)
    else:
        logging.info("%s", line)
    if not devices.get("GPU") and not devices.get("TPU") and nvidia_smi_present():
        logging.warning(
            "nvidia-smi is present but TensorFlow sees no GPU: this runs on the CPU. Install "
            "the CUDA libraries with `pip install -e '.[gpu]'` (or re-run scripts/setup.sh).")
    return line
