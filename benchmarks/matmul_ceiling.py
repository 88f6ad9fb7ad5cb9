"""The machine's float32 matmul ceiling, shared by ``bench_inference.py`` and ``bench_train.py``
(imported from the scripts' own folder; no flags here).

``matmul_call(size)`` returns a callable running one ``[size, size] x [size, size]`` float32
``tf.matmul`` (oneDNN on x86 when the entry point turned it on); ``matmul_ceiling_gflops`` turns
the median of ``reps`` such calls into GFLOP/s, counting the matmul as ``2 n^3`` FLOPs (one
multiply-add = 2 FLOPs, unlike fvcore's GFLOPs: divide by 2 before comparing).
"""

import time

import numpy as np


def matmul_call(size):
    """A no-argument callable running one ``[size, size] x [size, size]`` float32 ``tf.matmul``
    (traced and warmed up) and waiting for its result."""
    import tensorflow as tf

    a = tf.random.stateless_normal((size, size), seed=(0, 1))
    b = tf.random.stateless_normal((size, size), seed=(0, 2))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()  # trace + warm-up
    return lambda: matmul(a, b).numpy()


def gflops(size, seconds):
    """GFLOP/s of one ``size``-square matmul taking ``seconds`` (``2 n^3`` FLOPs)."""
    return 2 * size**3 / seconds / 1e9


def matmul_ceiling_gflops(call, size, reps):
    """Median GFLOP/s of ``reps`` calls of ``call = matmul_call(size)``."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return gflops(size, float(np.median(times)))


def start(size, reps, quick=False):
    """Builds ``matmul_call`` for a ``size``-square matmul (at most 512 with ``quick``), measures
    and prints the first ceiling; returns ``(call, size, ceiling)`` for the per-round timings."""
    size = min(size, 512) if quick else size
    call = matmul_call(size)
    ceiling = matmul_ceiling_gflops(call, size, reps)
    print(f"float32 tf.matmul {size}^2 ceiling: {ceiling:.1f} GFLOP/s", flush=True)
    return call, size, ceiling
