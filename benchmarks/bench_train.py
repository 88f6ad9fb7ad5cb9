"""Time of one SGD training step (forward, backward, update), Keras/TF vs the PyTorch reference.

    python benchmarks/bench_train.py                  # 4x16 + 8x8 R50, 112^2 and 224^2, batch 2 and 4
    python benchmarks/bench_train.py --quick          # tiny models at 32^2, seconds (smoke test)
    python benchmarks/bench_train.py --models=slowfast_r50_4x16 --image_sizes=112 --batch_sizes=2
    python benchmarks/bench_train.py --quick --plain_conv3d  # also time plain Conv3D layers (A/B)

For each (model, crop, batch) it builds the Keras classifier (``train_crop_size`` = the crop, 400
classes) and PyTorchVideo's ``create_slowfast`` with the same architecture (the one the parity
tests compare against), both with random weights, and times one step of SGD with momentum 0.9 on
a random batch and cross-entropy loss:

- Keras: ``model.compile(SGD, jit_compile=--jit_compile)`` then ``model.train_on_batch``, the
  step that ``model.fit`` (train.py) runs.
- PyTorch: ``zero_grad(); loss.backward(); step()`` in train mode.

Both run in this process, one step of each in turn (``--reps`` rounds, after ``--warmup`` untimed
rounds; the first Keras call, tracing/compilation, is reported separately), so machine load hits
both alike; the table reports medians and the ratio PyTorch time / Keras time (> 1: Keras faster).

``--plain_conv3d`` adds a third model: the Keras one with plain ``Conv3D`` layers instead of
``TimeFoldedConv3D`` (the stems and the ``[1, kh, kw]`` convs) and ``TemporalConv3D`` (the stride-1
``[kt, 1, 1]`` convs; same weights and math), interleaved with the other two; the ``fold gain``
column is its time over the default model's.

It also measures the machine's float32 matmul ceiling (a 4096 x 4096 ``tf.matmul``, as
``bench_inference.py`` does; ``--ceiling_size=0`` skips it), times that matmul once in every
round, and adds the fraction of the ceiling each framework's step reaches. The work of a step
is counted as the multiply-adds of its convolutions and dense layers (``flops.layer_flops``,
BatchNorm and element-wise ops not counted): the forward pass, the weight gradients (as much
again) and the input gradients (as much again, except the stems': the clips need none, and
neither framework computes them). As a matmul's ``2 n^3`` counts a multiply-add as two FLOPs,
fraction = ``2 * multiply-adds / step time / ceiling``. The two fractions' ratio is the speed
ratio, so they show how much of the hardware each step leaves unused: Keras at ``x`` times
PyTorch's speed needs ``x`` times PyTorch's fraction of the ceiling.
"""

import contextlib
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from slowfast_tf.utils import tf_startup  # noqa: E402

tf_startup.prefer_onednn()  # As train.py / export.py: oneDNN CPU kernels on x86 (see tf_startup).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import matmul_ceiling as ceiling_lib  # noqa: E402  (this script's folder)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["slowfast_r50_4x16", "slowfast_r50_8x8"], "Presets.")
_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["112", "224"], "Square crop sizes.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["2", "4"], "Batch sizes.")
_REPS = flags.DEFINE_integer("reps", 5, "Timed rounds (one step of each model per round).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed rounds after the first call.")
_THREADS = flags.DEFINE_integer("threads", 0, "CPU threads for both frameworks (0 = default).")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the Keras train step with XLA.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorchVideo reference.")
_PLAIN_CONV3D = flags.DEFINE_bool(
    "plain_conv3d", False, "Also time the Keras model with plain Conv3D layers instead of the time-folded and temporal ones (A/B)."
)
_CEILING_SIZE = flags.DEFINE_integer(
    "ceiling_size", 4096, "Side of the square float32 tf.matmul measuring the ceiling (0: skip)."
)
_CEILING_REPS = flags.DEFINE_integer("ceiling_reps", 5, "Timed matmuls for the first ceiling.")
_QUICK = flags.DEFINE_bool(
    "quick", False, "Tiny models (R50 depth, width 8, 8 frames) at 32^2, batch 2, 2 rounds."
)

NUM_CLASSES = 400
# Tiny architecture both frameworks can build (PyTorchVideo has no R18) for --quick.
QUICK_OVERRIDES = dict(depth=50, width=8, beta_inv=4, num_frames=8)


@contextlib.contextmanager
def _plain_conv3d():
    """Builds models with ``keras.layers.Conv3D`` where ``TimeFoldedConv3D`` or
    ``TemporalConv3D`` would be used."""
    import keras

    from slowfast_tf.models.common import torch_layers

    folded, temporal = torch_layers.TimeFoldedConv3D, torch_layers.TemporalConv3D
    torch_layers.TimeFoldedConv3D = torch_layers.TemporalConv3D = keras.layers.Conv3D
    try:
        yield
    finally:
        torch_layers.TimeFoldedConv3D, torch_layers.TemporalConv3D = folded, temporal


def _keras_step(name, image_size, overrides, plain_conv3d=False):
    import keras

    from slowfast_tf.models import build_model

    keras.utils.set_random_seed(0)
    with _plain_conv3d() if plain_conv3d else contextlib.nullcontext():
        model = build_model(
            name, num_classes=NUM_CLASSES, train_crop_size=image_size, **overrides
        )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=_JIT.value,
    )
    return model


def _torch_step(model, clips, labels):
    """Returns ``step()`` running one SGD step of the PyTorchVideo ``model`` on the batch."""
    import torch

    from slowfast_tf.convert import torch_reference

    arch = _reference_arch(model)
    # Same device class as Keras: the GPU when torch has CUDA (as bench_inference.py does).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_model = torch_reference.build_ptv_model(arch).train().to(device)
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs = [
        torch.from_numpy(clips[k].transpose(0, 4, 1, 2, 3).copy()).to(device)
        for k in arch.pathways
    ]
    target = torch.from_numpy(labels).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        # PyTorchVideo's multipathway stem replaces the list items in place: pass a fresh list.
        out = torch_model(list(inputs) if len(inputs) > 1 else inputs[0])
        loss = loss_fn(out, target)
        loss.backward()
        optimizer.step()
        return loss.detach().item()  # waits for the step, as train_on_batch does

    return step


def _reference_arch(model):
    from slowfast_tf.convert import verify

    arch = verify.reference_arch(model)
    if arch is None:
        raise SystemExit(f"error: PyTorchVideo has no equivalent of {model.name}; use --notorch")
    return arch


def train_step_macs(model, image_size, batch):
    """Multiply-adds of one training step's convolutions and dense layers: forward, weight
    gradients and input gradients, the stems' input gradients excepted (module docstring)."""
    from slowfast_tf.models.common import flops

    total = 0
    for name, _, macs in flops.layer_flops(
        model, image_size=image_size, batch_size=batch, convention="paper"
    ):
        # The stems (``s1_pathway{i}_stem_conv``) take the clips, which need no gradient.
        total += 2 * macs if name.endswith("stem_conv") else 3 * macs
    return total


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _fmt(row):
    cells = [row["model"], str(row["image_size"]), str(row["batch"]), f"{row['keras_s']:.3f}"]
    cells.append(f"{row['torch_s']:.3f}" if "torch_s" in row else "-")
    cells.append(f"{row['torch_s'] / row['keras_s']:.2f}" if "torch_s" in row else "-")
    cells += [f"{row['train_gflops']:.4g}", _percent(row.get("keras_fraction")),
              _percent(row.get("torch_fraction"))]
    cells.append(f"{row['ceiling_gflops_s']:.1f}" if "ceiling_gflops_s" in row else "-")
    if "plain_conv3d_s" in row:
        cells += [f"{row['plain_conv3d_s']:.3f}", f"{row['plain_conv3d_s'] / row['keras_s']:.2f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv):
    del argv
    import tensorflow as tf

    from slowfast_tf.training import devices

    if _THREADS.value:
        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    if _TORCH.value:
        import torch

        if _THREADS.value:
            torch.set_num_threads(_THREADS.value)
    devices.log_run_context("bench_train.py", to_stdout=True)
    quick = _QUICK.value
    sizes = [32] if quick else [int(s) for s in _IMAGE_SIZES.value]
    batches = [2] if quick else [int(b) for b in _BATCH_SIZES.value]
    reps, warmup = (2, 1) if quick else (_REPS.value, _WARMUP.value)
    matmul_call = None
    if _CEILING_SIZE.value > 0:
        matmul_call, ceiling_size, _ = ceiling_lib.start(
            _CEILING_SIZE.value, _CEILING_REPS.value, quick
        )
    overrides = dict(QUICK_OVERRIDES) if quick else {}
    rows = []
    for name in _MODELS.value:
        for size in sizes:
            for batch in batches:
                steps = {"keras": _keras_step(name, size, overrides)}
                if _PLAIN_CONV3D.value:
                    steps["plain_conv3d"] = _keras_step(name, size, overrides, plain_conv3d=True)
                backbone = steps["keras"].backbone
                rng = np.random.default_rng(0)
                clips = {
                    key: rng.normal(size=(batch, t, size, size, 3)).astype("float32")
                    for key, t in backbone.input_frames.items()
                }
                labels = rng.integers(0, NUM_CLASSES, size=(batch,))
                fns = {
                    key: (lambda m=m, x=clips, y=labels: m.train_on_batch(x, y))
                    for key, m in steps.items()
                }
                if _TORCH.value:
                    fns["torch"] = _torch_step(steps["keras"], clips, labels)
                if matmul_call is not None:
                    fns["matmul"] = matmul_call
                first = {}
                for key, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    first[key] = time.perf_counter() - start
                for _ in range(warmup):
                    for fn in fns.values():
                        fn()
                times = {key: [] for key in fns}
                for _ in range(reps):
                    for key, fn in fns.items():
                        start = time.perf_counter()
                        fn()
                        times[key].append(time.perf_counter() - start)
                row = {"model": name, "image_size": size, "batch": batch}
                row.update({f"{key}_s": float(np.median(t)) for key, t in times.items()})
                macs = train_step_macs(steps["keras"], size, batch)
                row["train_gflops"] = macs / 1e9
                if matmul_call is not None:
                    # This row's own ceiling: the machine's speed drifts between minutes.
                    row["ceiling_gflops_s"] = ceiling_lib.gflops(ceiling_size, row.pop("matmul_s"))
                    for key in ("keras", "torch"):
                        if f"{key}_s" in row:
                            achieved = 2 * macs / row[f"{key}_s"] / 1e9
                            row[f"{key}_fraction"] = achieved / row["ceiling_gflops_s"]
                rows.append(row)
                print(
                    f"{name} {size}^2 batch {batch}: first call "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in first.items())
                    + "; per-round s: "
                    + "; ".join(f"{k} " + " ".join(f"{t:.3f}" for t in v) for k, v in times.items()),
                    flush=True,
                )
    header = (
        "| model | crop | batch | Keras s/step | PyTorchVideo s/step | Keras speed / PyTorch "
        "| step GFLOPs | Keras % of ceiling | PyTorch % of ceiling | ceiling GFLOP/s |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if _PLAIN_CONV3D.value:
        header += " Keras plain-Conv3D s/step | fold gain |"
        rule += "---|---|"
    print(f"\nmedians of {reps} interleaved rounds (jit_compile={_JIT.value})")
    print("step GFLOPs: multiply-adds of the convolutions and dense layers in one step (forward, "
          "weight and input gradients; 1 multiply-add = 1 FLOP, as fvcore); % of ceiling = "
          "2 * step GFLOPs / step s / the row's matmul GFLOP/s (2 n^3 FLOPs)")
    print(header + "\n" + rule)
    for row in rows:
        print(_fmt(row))


if __name__ == "__main__":
    app.run(main)
