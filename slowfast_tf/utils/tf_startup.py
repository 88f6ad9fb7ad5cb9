"""Quiet TensorFlow start-up for command-line entry points (call before ``import tensorflow``).

On a machine without a CUDA driver, every TF 2.21 process prints, before anything of ours::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    (the first two lines again)
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

The pair appears twice because two TF shared libraries (``libtensorflow_framework`` and
``libtensorflow_cc``) each carry a copy of absl logging and each log while being loaded, before
``TF_CPP_MIN_LOG_LEVEL`` is read, so that variable cannot hide them. The cuInit "error" only
restates that there is no driver.

`quiet_tf_startup` sets ``TF_CPP_MIN_LOG_LEVEL=1`` (C++ INFO off, warnings and errors kept) unless
the user set it, and, only when no CUDA driver can be loaded, imports TensorFlow and lists its
devices with file descriptor 2 passed through a filter that drops exactly those lines. Everything
else written meanwhile goes through unchanged. With a driver present (a GPU machine), or with
``TF_CPP_MIN_LOG_LEVEL`` set by the user, nothing is filtered: a cuInit failure there is real.

`prefer_onednn`, also called by the entry points before TensorFlow is imported, turns on
TF's oneDNN CPU kernels where TF would not (see its docstring); its start-up notice is then
dropped with the lines above.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator, Sequence

__all__ = [
    "NO_DRIVER_NOISE",
    "ONEDNN_NOTICE",
    "cuda_driver_loadable",
    "filtered_stderr",
    "is_x86_64",
    "onednn_enabled",
    "prefer_onednn",
    "quiet_tf_startup",
]

# Lines that only say "this machine has no CUDA driver" (substrings, matched per line).
NO_DRIVER_NOISE = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"Could not find cuda drivers on your machine",
    b"failed call to cuInit",
)
# TF's notice (printed twice, once per shared library) when oneDNN is on; dropped by
# `quiet_tf_startup` when `prefer_onednn` turned it on (`devices.run_context` says so instead).
ONEDNN_NOTICE = b"oneDNN custom operations are on"
_onednn_set_here = False


def cuda_driver_loadable() -> bool:
    """Whether ``libcuda`` (the NVIDIA driver library TF's CUDA platform needs) can be loaded."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def filtered_stderr(drop: Sequence[bytes]) -> Iterator[None]:
    """Passes everything written to file descriptor 2 (C++ included) except lines containing ``drop``.

    Lines are forwarded as they come (a crash loses at most a partial line), in order.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, "rb", buffering=0) as source:
            for line in iter(source.readline, b""):
                if not any(pattern in line for pattern in drop):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="filtered_stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # Closes the pipe's last write end: the pump reads to the end and stops.
        thread.join(timeout=10)
        os.close(saved)


def quiet_tf_startup() -> None:
    """See the module docstring. Idempotent; a no-op once TensorFlow is imported."""
    if "tensorflow" in sys.modules:
        return
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return  # The user chose a level: show what TF prints at it.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    if cuda_driver_loadable():
        return
    drop = NO_DRIVER_NOISE + ((ONEDNN_NOTICE,) if _onednn_set_here else ())
    with filtered_stderr(drop):
        import tensorflow as tf

        tf.config.list_physical_devices()  # Runs cuInit now, inside the filter.


def is_x86_64() -> bool:
    """Whether this is an x86-64 machine (where `prefer_onednn` turns oneDNN on)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def prefer_onednn() -> bool:
    """Turns TF's oneDNN CPU kernels on for this process (call before ``import tensorflow``).

    TF 2.21 enables oneDNN by default only on x86 CPUs with VNNI, AVX-512 BF16 or AMX instructions;
    elsewhere (e.g. AVX2-only CPUs) it uses its Eigen kernels. For these models oneDNN is much
    faster: on a 2-core AVX2 AMD EPYC, one SlowFast R50 4x16 112^2 training step took 1.2 s
    instead of 2.5 s, inference ran 1.3-1.9x faster and the 4096^2 ``tf.matmul`` reached
    149 instead of 76 GFLOP/s (``benchmarks/``, 2026-12-03). So the entry points set
    ``TF_ENABLE_ONEDNN_OPTS=1`` on x86-64 unless the user set it (``TF_ENABLE_ONEDNN_OPTS=0``
    keeps the Eigen kernels). A no-op once TensorFlow is imported, and on other CPUs.

    Returns:
        Whether this call set the variable.
    """
    if "tensorflow" in sys.modules or "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return False
    if not is_x86_64():
        return False
    global _onednn_set_here
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    _onednn_set_here = True
    return True


def onednn_enabled() -> bool | None:
    """Whether this TensorFlow process runs oneDNN CPU kernels (``None`` if TF cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # A TF build without the private module.
        return None
    return bool(_pywrap_util_port.IsMklEnabled())
