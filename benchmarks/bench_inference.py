"""Inference throughput of slowfast_tf models per Keras backend and vs the PyTorch reference.

    python benchmarks/bench_inference.py                 # SlowFast 4x16 + 8x8 R50, 224^2, batch 1 and 8
    python benchmarks/bench_inference.py --quick         # tiny models, seconds (smoke test)
    python benchmarks/bench_inference.py --models=slowfast_r50_8x8 --batch_sizes=1 --iters=10
    python benchmarks/bench_inference.py --backend=jax   # same models on the JAX backend
    python benchmarks/bench_inference.py --backend=tensorflow,jax,torch --quick  # one table

For each (model, batch) it prints clips/s of the Keras model on ``--backend`` and of
``pytorchvideo.models.slowfast.create_slowfast`` with the same architecture and random weights
(``torch.no_grad``, eval mode), the FLOPs per clip (fvcore convention, ``flops.count_flops``), the
achieved GFLOP/s and the Keras / PyTorchVideo speed ratio. Inputs are random: throughput does not
depend on the values. Times are medians of ``--iters`` calls, one Keras call and one PyTorchVideo
call in turn, after ``--warmup`` untimed rounds.

The Keras model is timed with BatchNorm folded into the convolutions
(``bn_folding.fold_batch_norm``: the model ``export.py`` writes for serving by default; same
outputs to float32 rounding), and ``--nofold_batch_norm`` times it as built. The PyTorchVideo
model runs as that library builds it (eval-mode ``BatchNorm3d`` layers, not fused).

On the tensorflow backend it first measures the machine's float32 matmul ceiling (a 4096 x 4096
``tf.matmul``, median of ``--ceiling_reps``; ``--ceiling_size`` changes the size) and adds the
fraction of that ceiling each model reaches (``% of ceiling`` column, appended at the end). The
same matmul is also timed in every round, next to the model calls, and each row's fraction uses
the median of its own rounds (last column): the machine's speed drifts between minutes. The
two are put in the same unit first: fvcore (and so the GFLOPs/clip and GFLOP/s columns, as the
papers quote them) counts one multiply-add as one FLOP, while the matmul's ``2 n^3`` counts it
as two, so the fraction is ``2 * GFLOP/s / ceiling``.

Backends (the same model code and weights on each):
- ``tensorflow``: a ``tf.function`` (XLA with ``--jit_compile``).
- ``jax``: ``model.stateless_call`` under ``jax.jit`` (always XLA-compiled: eager JAX dispatches
  op by op).
- ``torch``: the model called eagerly under ``torch.no_grad``.
The first call (tracing / compilation) is timed separately and is not part of clips/s.

Keras fixes its backend when it is imported, so the script sets ``KERAS_BACKEND`` from
``--backend`` before importing it; with several backends it runs itself once per backend (one
process each, one after the other; the PyTorchVideo reference is timed in the first only) and
ends with a table of clips/s per backend. ``--threads`` applies to TensorFlow and torch (both
the torch backend and the reference); JAX uses its defaults.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import types

# --backend defaults to $KERAS_BACKEND (tensorflow when unset), as plain Keras would pick.
_DEFAULT_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from slowfast_tf.utils import tf_startup  # noqa: E402

tf_startup.prefer_onednn()  # As train.py / export.py: oneDNN CPU kernels on x86 (see tf_startup).

import matmul_ceiling as ceiling_lib  # noqa: E402  (this script's folder)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["slowfast_r50_4x16", "slowfast_r50_8x8"], "Presets.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square crop size.")
_ITERS = flags.DEFINE_integer(
    "iters", 3, "Timed iterations per (model, batch), Keras and PyTorch in turn (medians)."
)
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed iterations (allocation, caches).")
_THREADS = flags.DEFINE_integer("threads", 0, "CPU threads for both frameworks (0 = default).")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the Keras forward pass with XLA.")
_FOLD_BN = flags.DEFINE_bool(
    "fold_batch_norm", True,
    "Time the Keras model with BatchNorm folded into the convolutions, as export.py serves it "
    "(--nofold_batch_norm: the model as built, with inference-mode BatchNorm layers).",
)
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorchVideo reference.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny models at 32x32, 1 iteration: a smoke run.")
_BACKEND = flags.DEFINE_list(
    "backend", [_DEFAULT_BACKEND],
    "Keras backend(s): tensorflow, jax, torch (several: one process each). Default: $KERAS_BACKEND.",
)
_CEILING_SIZE = flags.DEFINE_integer(
    "ceiling_size", 4096, "Side of the square float32 tf.matmul measuring the ceiling (0: skip)."
)
_CEILING_REPS = flags.DEFINE_integer("ceiling_reps", 5, "Timed matmuls for the ceiling.")
_ROWS_OUT = flags.DEFINE_string("rows_out", None, "Internal: write the result rows as JSON here.")

BACKENDS = ("tensorflow", "jax", "torch")

# Tiny architecture shared by both frameworks in --quick mode.
_QUICK_OVERRIDES = dict(depth=50, width=8, beta_inv=4, num_frames=8)


def _stub_torchvision():
    """pytorchvideo's head module imports ``torchvision.ops.RoIAlign`` (detection only), and
    torchvision is not installable with this torch build; a stub lets the classifier import."""
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        torchvision = types.ModuleType("torchvision")
        ops = types.ModuleType("torchvision.ops")

        class RoIAlign:  # pragma: no cover - never instantiated by the classifiers
            def __init__(self, *args, **kwargs):
                raise RuntimeError("torchvision stub: RoIAlign is unavailable")

        ops.RoIAlign = RoIAlign
        torchvision.ops = ops
        sys.modules["torchvision"] = torchvision
        sys.modules["torchvision.ops"] = ops


def _torch_model(backbone, image_size, train_crop):
    import torch.nn as nn

    _stub_torchvision()
    from pytorchvideo.models.slowfast import create_slowfast

    alpha, k = backbone.alpha, backbone.fusion_kernel_size
    side = train_crop // 32
    fast_width = backbone.width // backbone.beta_inv
    return create_slowfast(
        model_depth=backbone.depth,
        model_num_class=400,
        slowfast_channel_reduction_ratio=(backbone.beta_inv,),
        slowfast_fusion_conv_kernel_size=(k, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        stem_dim_outs=(backbone.width, fast_width),
        head_pool_kernel_sizes=(
            (backbone.output_frames["slow"], side, side),
            (backbone.output_frames["fast"], side, side),
        ),
        norm=nn.BatchNorm3d,
    ).eval()


def _interleaved_medians(fns, iters, warmup):
    """Median seconds per call of each of ``fns``, called in turn ``iters`` times (after
    ``warmup`` untimed rounds), so that a burst of machine load hits every one of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(iters):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def _keras_forward(model, backend, jit_compile):
    """Returns ``f(inputs) -> numpy logits`` running ``model`` for inference on ``backend``."""
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
        return lambda x: fn(x).numpy()
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        return lambda x: np.asarray(fn(trainable, non_trainable, x))

    import torch

    def run(x):
        with torch.no_grad():
            return keras.ops.convert_to_numpy(model(x, training=False))

    return run


def _log_context(backend):
    if backend == "tensorflow":
        from slowfast_tf.training import devices

        devices.log_run_context("bench_inference.py", to_stdout=True)
    elif backend == "jax":
        import jax

        print(f"bench_inference.py: backend=jax {jax.__version__} devices={jax.devices()}")
    else:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"bench_inference.py: backend=torch {torch.__version__} device={device}")


def _run_backends(backends, argv):
    """Runs this script once per backend (Keras fixes its backend at import); prints one table."""
    passthrough, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("--backend", "-backend"):
            skip = True
        elif not arg.lstrip("-").startswith(("backend=", "rows_out")):
            passthrough.append(arg)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, backend in enumerate(backends):
            rows_out = os.path.join(tmp, f"{backend}.json")
            extra = [] if i == 0 else ["--notorch"]  # the reference once is enough
            cmd = [sys.executable, os.path.abspath(__file__), *passthrough, *extra,
                   f"--backend={backend}", f"--rows_out={rows_out}"]  # fmt: skip
            print(f"\n=== --backend={backend}", flush=True)
            rc = subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": backend}).returncode
            if rc != 0:
                raise SystemExit(f"bench_inference.py --backend={backend} failed (exit {rc})")
            with open(rows_out) as f:
                results[backend] = json.load(f)
    keys = [(r["model"], r["batch"]) for r in results[backends[0]]]
    cols = " | ".join(f"{b} clips/s" for b in backends)
    print(f"\n| model | batch | {cols} | PyTorchVideo clips/s |")
    print("|---|---|" + "---|" * (len(backends) + 1))
    for model, batch in keys:
        cells = []
        for backend in backends:
            row = next(r for r in results[backend] if (r["model"], r["batch"]) == (model, batch))
            cells.append(f"{row['keras_clips_s']:.2f}")
        first = next(r for r in results[backends[0]] if (r["model"], r["batch"]) == (model, batch))
        reference = first.get("torch_clips_s", float("nan"))
        print(f"| {model} | {batch} | {' | '.join(cells)} | {reference:.2f} |")


def main(argv):
    backends = list(dict.fromkeys(_BACKEND.value))
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown:
        print(f"error: --backend must be one or more of {BACKENDS}. Received: {_BACKEND.value}",
              file=sys.stderr)
        raise SystemExit(2)
    if len(backends) > 1:
        _run_backends(backends, sys.argv)
        return
    backend = backends[0]
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise SystemExit(f"error: Keras was already imported with another backend than {backend}")
    os.environ["KERAS_BACKEND"] = backend  # before the first keras import
    if backend == "jax":
        # Random weights either way; the non-partitionable threefry compiles each initializer
        # shape ~5x faster on CPU (JAX compiles one program per variable shape).
        os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
    import keras

    from slowfast_tf.models import build_model
    from slowfast_tf.models.common.bn_folding import fold_batch_norm
    from slowfast_tf.models.common.flops import count_flops, count_params

    if _THREADS.value and backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    if _THREADS.value and (backend == "torch" or _TORCH.value):
        import torch

        torch.set_num_threads(_THREADS.value)
    quick = _QUICK.value
    image_size = 32 if quick else _IMAGE_SIZE.value
    iters, warmup = (1, 1) if quick else (_ITERS.value, _WARMUP.value)
    overrides = dict(_QUICK_OVERRIDES) if quick else {}
    train_crop = 32 if quick else 224
    _log_context(backend)
    if _JIT.value and backend != "tensorflow":
        print(f"note: --jit_compile applies to tensorflow only ({backend}: see the docstring)")
    ceiling = matmul_call = None
    if backend == "tensorflow" and _CEILING_SIZE.value > 0:
        # Also timed in every round next to the models: the machine's speed drifts by 10-20%
        # between minutes here, so each row's fraction uses the ceiling of its own rounds.
        matmul_call, size, ceiling = ceiling_lib.start(
            _CEILING_SIZE.value, _CEILING_REPS.value, quick
        )
    rows = []
    for name in _MODELS.value:
        start = time.perf_counter()
        model = build_model(name, train_crop_size=train_crop, **overrides)
        # FLOPs and params of the model as built (the folded one computes the same function).
        flops, params = count_flops(model, image_size=image_size), count_params(model)
        if _FOLD_BN.value:
            model = fold_batch_norm(model)
        folded = " (BatchNorm folded)" if _FOLD_BN.value else ""
        print(f"{name}: built on {backend}{folded} in {time.perf_counter() - start:.1f} s",
              flush=True)
        backbone = model.backbone
        forward = _keras_forward(model, backend, _JIT.value)
        torch_model = None
        if _TORCH.value:
            import torch

            # Same device class as Keras: the GPU when torch has CUDA (the gpu_check.sh case).
            torch_device = "cuda" if torch.cuda.is_available() else "cpu"
            torch_model = _torch_model(backbone, image_size, train_crop).to(torch_device)
            torch_params = sum(p.numel() for p in torch_model.parameters())
            print(f"{name}: params keras={params:,} torch={torch_params:,} "
                  f"(torch on {torch_device})")
        for batch in (int(b) for b in _BATCH_SIZES.value):
            rng = np.random.default_rng(0)
            clips = {
                key: rng.normal(size=(batch, t, image_size, image_size, 3)).astype("float32")
                for key, t in backbone.input_frames.items()
            }
            inputs = {k: keras.ops.convert_to_tensor(v) for k, v in clips.items()}
            # Trace / compile outside the timed loop (it is not inference), so --warmup=0 is fair.
            start = time.perf_counter()
            forward(inputs)
            first_call_s = time.perf_counter() - start
            timed = [lambda x=inputs, f=forward: f(x)]
            if torch_model is not None:
                torch_inputs = [
                    torch.from_numpy(clips[k].transpose(0, 4, 1, 2, 3).copy()).to(torch_device)
                    for k in ("slow", "fast")
                ]

                def torch_forward(x=torch_inputs, m=torch_model):
                    # PTV mutates the input list in place: pass a fresh list each call. .cpu()
                    # waits for the result, as .numpy() does on the Keras side.
                    with torch.no_grad():
                        return m(list(x)).cpu()

                timed.append(torch_forward)
            if matmul_call is not None:
                timed.append(matmul_call)
            keras_s, *others = _interleaved_medians(timed, iters, warmup)
            torch_s = others[:1] if torch_model is not None else []
            row = {
                "model": name,
                "batch": batch,
                "backend": backend,
                "keras_clips_s": batch / keras_s,
                "gflops_clip": flops / 1e9,
                "keras_gflops_s": batch * flops / 1e9 / keras_s,
                "first_call_s": first_call_s,
            }
            if matmul_call is not None:
                row["ceiling_gflops_s"] = ceiling_lib.gflops(size, others[-1])
                # fvcore counts a multiply-add as 1 FLOP, the matmul ceiling (2 n^3) as 2.
                row["ceiling_fraction"] = 2 * row["keras_gflops_s"] / row["ceiling_gflops_s"]
            if torch_s:
                row["torch_clips_s"] = batch / torch_s[0]
                row["keras_over_torch"] = torch_s[0] / keras_s
            rows.append(row)
            print(
                "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    # Columns 1-7 keep their positions (benchmarks/gpu_check.sh reads column 7).
    header = ("| model | batch | GFLOPs/clip | Keras clips/s | Keras GFLOP/s | PyTorchVideo clips/s "
              "| Keras/PyTorchVideo | backend | % of matmul ceiling | ceiling GFLOP/s |")
    if ceiling:
        print(f"\nmatmul ceiling (float32 tf.matmul): {ceiling:.1f} GFLOP/s before the models; each "
              "row's ceiling is the median of the matmuls timed in that row's rounds.")
        print("GFLOPs/clip and GFLOP/s count a multiply-add as 1 FLOP, as fvcore and the papers do; "
              "the ceiling counts it as 2, so % of ceiling = 2 * GFLOP/s / ceiling.")
    print("\n" + header + "\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['gflops_clip']:.2f} | {r['keras_clips_s']:.2f} | "
            f"{r['keras_gflops_s']:.1f} | {r.get('torch_clips_s', float('nan')):.2f} | "
            f"{r.get('keras_over_torch', float('nan')):.2f} | {r['backend']} | "
            f"{100 * r.get('ceiling_fraction', float('nan')):.0f}% | "
            f"{r.get('ceiling_gflops_s', float('nan')):.1f} |"
        )
    if _ROWS_OUT.value:
        from slowfast_tf.utils.fileio import atomic_write_text

        atomic_write_text(_ROWS_OUT.value, json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
