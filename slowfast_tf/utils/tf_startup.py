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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator, Sequence

__all__ = ["NO_DRIVER_NOISE", "cuda_driver_loadable", "filtered_stderr", "quiet_tf_startup"]

# Lines that only say "this machine has no CUDA driver" (substrings, matched per line).
NO_DRIVER_NOISE = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"Could not find cuda drivers on your machine",
    b"failed call to cuInit",
)


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
    with filtered_stderr(NO_DRIVER_NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices()  # Runs cuInit now, inside the filter.
