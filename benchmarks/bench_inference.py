"""Inference throughput of slowfast_tf models vs the PyTorch reference (PyTorchVideo), same process.

    python benchmarks/bench_inference.py                 # SlowFast 4x16 + 8x8 R50, 224^2, batch 1 and 8
    python benchmarks/bench_inference.py --quick         # tiny models, seconds (smoke test)
    python benchmarks/bench_inference.py --models=slowfast_r50_8x8 --batch_sizes=1 --iters=10

For each (model, batch) it prints clips/s for Keras (a ``tf.function``, optionally XLA) and for
``pytorchvideo.models.slowfast.create_slowfast`` with the same architecture and random weights
(``torch.no_grad``, eval mode), the FLOPs per clip (fvcore convention, ``flops.count_flops``), the
achieved GFLOP/s and the Keras / PyTorch speed ratio. Both frameworks use every CPU core unless
``--threads`` is set. Inputs are random: throughput does not depend on the values.
"""

import os
import sys
import time
import types

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["slowfast_r50_4x16", "slowfast_r50_8x8"], "Presets.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square crop size.")
_ITERS = flags.DEFINE_integer("iters", 3, "Timed iterations per (model, batch).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed iterations (allocation, caches).")
_THREADS = flags.DEFINE_integer("threads", 0, "CPU threads for both frameworks (0 = default).")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the Keras forward pass with XLA.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorchVideo reference.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny models at 32x32, 1 iteration: a smoke run.")

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


def _time(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def main(argv):
    del argv
    import tensorflow as tf

    from slowfast_tf.models import build_model
    from slowfast_tf.models.common.flops import count_flops, count_params
    from slowfast_tf.training import devices

    if _THREADS.value:
        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    quick = _QUICK.value
    image_size = 32 if quick else _IMAGE_SIZE.value
    iters, warmup = (1, 1) if quick else (_ITERS.value, _WARMUP.value)
    overrides = dict(_QUICK_OVERRIDES) if quick else {}
    train_crop = 32 if quick else 224
    devices.log_run_context("bench_inference.py", to_stdout=True)
    rows = []
    for name in _MODELS.value:
        model = build_model(name, train_crop_size=train_crop, **overrides)
        backbone = model.backbone
        flops = count_flops(model, image_size=image_size)
        forward = tf.function(lambda x, m=model: m(x, training=False), jit_compile=_JIT.value)
        torch_model = None
        if _TORCH.value:
            import torch

            if _THREADS.value:
                torch.set_num_threads(_THREADS.value)
            # Same device class as Keras: the GPU when torch has CUDA (the gpu_check.sh case).
            torch_device = "cuda" if torch.cuda.is_available() else "cpu"
            torch_model = _torch_model(backbone, image_size, train_crop).to(torch_device)
            torch_params = sum(p.numel() for p in torch_model.parameters())
            print(f"{name}: params keras={count_params(model):,} torch={torch_params:,} "
                  f"(torch on {torch_device})")
        for batch in (int(b) for b in _BATCH_SIZES.value):
            rng = np.random.default_rng(0)
            clips = {
                key: rng.normal(size=(batch, t, image_size, image_size, 3)).astype("float32")
                for key, t in backbone.input_frames.items()
            }
            tf_inputs = {k: tf.constant(v) for k, v in clips.items()}
            # Trace outside the timed loop (tracing is not inference), so --warmup=0 is fair.
            forward.get_concrete_function(tf_inputs)
            keras_s = _time(lambda x=tf_inputs, f=forward: f(x).numpy(), iters, warmup)
            row = {
                "model": name,
                "batch": batch,
                "keras_clips_s": batch / keras_s,
                "gflops_clip": flops / 1e9,
                "keras_gflops_s": batch * flops / 1e9 / keras_s,
            }
            if torch_model is not None:
                with torch.no_grad():
                    torch_inputs = [
                        torch.from_numpy(clips[k].transpose(0, 4, 1, 2, 3).copy()).to(torch_device)
                        for k in ("slow", "fast")
                    ]
                    # PTV mutates the input list in place: pass a fresh list each call. .cpu()
                    # waits for the result, as .numpy() does on the Keras side.
                    torch_s = _time(lambda x=torch_inputs, m=torch_model: m(list(x)).cpu(), iters,
                                    warmup)
                row["torch_clips_s"] = batch / torch_s
                row["keras_over_torch"] = torch_s / keras_s
            rows.append(row)
            print(
                "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    header = "| model | batch | GFLOPs/clip | Keras clips/s | Keras GFLOP/s | torch clips/s | Keras/torch |"
    print("\n" + header + "\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['gflops_clip']:.2f} | {r['keras_clips_s']:.2f} | "
            f"{r['keras_gflops_s']:.1f} | {r.get('torch_clips_s', float('nan')):.2f} | "
            f"{r.get('keras_over_torch', float('nan')):.2f} |"
        )


if __name__ == "__main__":
    app.run(main)
