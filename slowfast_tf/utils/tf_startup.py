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
dropped with the lines above. `retain_freed_memory`, called by the training, export, predict and
benchmark entry points, keeps freed activation memory in the process (see its docstring).
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
    "retain_freed_memory",
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
# glibc's mallopt parameters (malloc.h) and the environment that sets them at process start.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_RETAIN_TRIM_THRESHOLD = 1 << 30
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_TOP_PAD_")


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


def retain_freed_memory() -> bool:
    """Makes glibc's ``malloc`` keep freed memory in the process instead of returning it to the OS.

    By default glibc serves each allocation above its mmap threshold (at most 32 MiB) with a fresh
    ``mmap`` and unmaps it on ``free``, and it trims the heap's free top. A TF step allocates and
    frees the same large activation and gradient buffers every time, so every step faults those
    pages in again (kernel page faults, each zero-filling 4 KiB): ~65,000 minor faults per SlowFast
    4x16 R50 112^2 batch-2 training step. This call sets ``M_MMAP_MAX=0`` (no mmapped chunks: every
    block comes from the heap and is reused) and a 1 GiB ``M_TRIM_THRESHOLD``. Measured on a 2-core
    AVX2 AMD EPYC (2026-12-03), in one process with the two settings interleaved per step: training
    steps 1.08x faster at 4x16 and 8x8 R50 112^2 batch 2 (faults 65k -> 37k and 78k -> 23k per step),
    a BN-folded 4x16 224^2 batch-1 forward 1.06x, PyTorchVideo's training step 1.04x.

    The cost: memory freed by the process stays mapped to it, so its resident size stays near its
    peak. A no-op where the C library is not glibc, or where the user set glibc's malloc tuning
    (``GLIBC_TUNABLES`` with ``glibc.malloc``, or any ``MALLOC_*_`` variable above): e.g.
    ``MALLOC_MMAP_MAX_=65536`` keeps glibc's default. Can be called at any time; it affects
    allocations made after it.

    Returns:
        Whether this call changed the settings.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _RETAIN_TRIM_THRESHOLD))


def onednn_enabled() -> bool | None:
    """Whether this TensorFlow process runs oneDNN CPU kernels (``None`` if TF cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # A TF build without the private module.
        return None
    return bool(_pywrap_util_port.IsMklEnabled())
