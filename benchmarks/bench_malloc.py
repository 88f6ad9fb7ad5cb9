"""What `tf_startup.retain_freed_memory` buys: glibc's default malloc vs freed memory kept.

    python benchmarks/bench_malloc.py                               # 4x16 R50 112^2 batch 2, training
    python benchmarks/bench_malloc.py --model=slowfast_r50_8x8
    python benchmarks/bench_malloc.py --mode=inference --image_size=224 --batch_size=1
    python benchmarks/bench_malloc.py --mode=torch                  # PyTorchVideo's training step
    python benchmarks/bench_malloc.py --quick                       # tiny model, seconds

One process, one model, the two malloc settings switched with ``mallopt`` in turn: per round,
glibc's defaults (mmap for large blocks, unmapped on free; heap trimming), one untimed step to let
the heap settle, one timed step; then the same with ``M_MMAP_MAX=0`` and a 1 GiB trim threshold
(what `retain_freed_memory` sets). It prints the medians of ``--reps`` rounds, their ratio, and the
median minor page faults of a timed step under each setting.

``--mode``: ``train`` (Keras ``train_on_batch`` with SGD, as bench_train.py), ``inference`` (the
BN-folded model ``export.py`` serves, a ``tf.function`` forward pass) or ``torch`` (PyTorchVideo's
SGD step, as bench_train.py times it). Linux with glibc only.
"""

import ctypes
import os
import platform
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from slowfast_tf.utils import tf_startup  # noqa: E402

tf_startup.prefer_onednn()  # As train.py / export.py: oneDNN CPU kernels on x86 (see tf_startup).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODEL = flags.DEFINE_string("model", "slowfast_r50_4x16", "Preset.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 112, "Square crop size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 2, "Batch size.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "inference", "torch"], "What is timed.")
_REPS_MALLOC = flags.DEFINE_integer("rounds", 6, "Timed rounds (one step per setting per round).")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}


def _set_malloc(retain):
    libc = ctypes.CDLL(None)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if retain:
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    else:
        ok = all(libc.mallopt(k, v) for k, v in _GLIBC_DEFAULTS.items())
        libc.malloc_trim(0)  # Give back what the other setting kept.
    if not ok:
        raise RuntimeError("mallopt failed")


def _step_fn(name, size, batch, mode, overrides):
    model = bench_train._keras_step(name, size, overrides)
    rng = np.random.default_rng(0)
    clips = {
        key: rng.normal(size=(batch, t, size, size, 3)).astype("float32")
        for key, t in model.backbone.input_frames.items()
    }
    labels = rng.integers(0, bench_train.NUM_CLASSES, size=(batch,))
    if mode == "train":
        return lambda: model.train_on_batch(clips, labels)
    if mode == "torch":
        return bench_train._torch_step(model, clips, labels)
    import tensorflow as tf

    from slowfast_tf.models.common.bn_folding import fold_batch_norm

    folded = fold_batch_norm(model)
    forward = tf.function(lambda x: folded(x, training=False))
    inputs = {k: tf.constant(v) for k, v in clips.items()}
    return lambda: forward(inputs).numpy()


def main(argv):
    del argv
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        raise SystemExit("bench_malloc.py needs Linux with glibc (it switches glibc's mallopt).")
    quick = bench_train._QUICK.value
    name, mode = _MODEL.value, _MODE.value
    size, batch = (32, 2) if quick else (_IMAGE_SIZE.value, _BATCH_SIZE.value)
    rounds = 2 if quick else _REPS_MALLOC.value
    overrides = dict(bench_train.QUICK_OVERRIDES) if quick else {}
    step = _step_fn(name, size, batch, mode, overrides)
    step()
    step()  # Trace / warm up.
    times = {"glibc default": [], "retained": []}
    faults = {key: [] for key in times}
    for _ in range(rounds):
        for key in times:
            _set_malloc(key == "retained")
            step()  # Untimed: the heap settles under this setting.
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
            faults[key].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(f"{name} {size}^2 batch {batch}, {mode}; per-round s: "
          + "; ".join(f"{k} " + " ".join(f"{t:.3f}" for t in v) for k, v in times.items()))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print("| model | crop | batch | mode | glibc default s | retained s | speed-up | minor faults "
          "default / retained |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {name} | {size} | {batch} | {mode} | {med['glibc default']:.3f} | "
          f"{med['retained']:.3f} | {med['glibc default'] / med['retained']:.3f} | "
          f"{int(np.median(faults['glibc default']))} / {int(np.median(faults['retained']))} |")


if __name__ == "__main__":
    app.run(main)
