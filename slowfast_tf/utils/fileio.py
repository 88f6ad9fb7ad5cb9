"""Atomic file output: every file the project writes goes through here.

A reader (or a rerun after a kill) sees either the old complete file or the new complete file, never a
half-written or 0-byte one. Local paths are written to a hidden temporary file in the same folder, flushed
to disk, then renamed over the target with ``os.replace`` (atomic on POSIX within one filesystem). Paths on
other TF filesystems (``gs://``, ``s3://``, ...) are written to a local temporary file and copied with
``tf.io.gfile.copy``; object stores make the object visible only when the upload completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "atomic_open", "atomic_write_text", "atomic_write_bytes", "is_remote"]


def is_remote(path: str) -> bool:
    """True for URL-like paths (``gs://bucket/x``) that need ``tf.io.gfile`` rather than ``os``."""
    return "://" in str(path)


def _fsync_file(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path to write instead of ``path``; publishes it atomically on success.

    The temporary name keeps the target's base name as its suffix (``.tmp-<pid>-final.weights.h5``), so
    writers that check extensions (Keras ``save_weights`` / ``save``) accept it. On an exception the
    temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    if is_remote(path):
        local_dir = tempfile.mkdtemp(prefix="slowfast_tf_atomic_")
        tmp = os.path.join(local_dir, os.path.basename(path))
        try:
            yield tmp
            import tensorflow as tf  # Remote filesystems only; keeps this module TF-free otherwise.

            tf.io.gfile.copy(tmp, path, overwrite=True)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
        return
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"atomic_path: the writer did not create {tmp!r} for {path!r}")
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """``open()`` for writing, published atomically when the block exits without an exception."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open is for writing ('w' or 'wb' modes). Received: mode={mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode.replace("x", "w"), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
