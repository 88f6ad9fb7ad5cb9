"""Time of one SGD training step (forward, backward, update), Keras/TF vs the PyTorch reference.

    python benchmarks/bench_train.py                  # 4x16 + 8x8 R50, 112^2 and 224^2, batch 2 and 4
    python benchmarks/bench_train.py --quick          # tiny models at 32^2, seconds (smoke test)
    python benchmarks/bench_train.py --models=slowfast_r50_4x16 --image_sizes=112 --batch_sizes=2
    python benchmarks/bench_train.py --quick --plain_conv3d  # also time plain Conv3D layers (A/B)
    python benchmarks/bench_train.py --breakdown      # also: where each framework's step time goes

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

``--breakdown`` splits each framework's step into parts, timed in the same interleaved rounds
and printed as a second table:

- convs alone: every convolution of the model on its own, one after the other, on random inputs
  at its shapes in the model: forward pass, input and kernel gradients (the stems' kernel
  gradient only), as counted by ``conv GFLOPs``, and the fraction of the ceiling that reaches.
  Each conv also pays one call's overhead (a ``tf.function`` call, a torch dispatch), which
  dominates at ``--quick`` sizes;
- BatchNorm: the step minus the step of the same model built with an identity for each
  BatchNorm (forward, backward, moving averages, and the updates of its scales and offsets);
- update alone: one optimizer update (SGD, momentum 0.9) on zero gradients shaped like the
  model's parameters;
- rest: the step minus those three: element-wise ops, slicing and concatenation, pooling, the
  head and the loss, framework overhead, and any difference between a conv inside the step and
  alone (cache effects, ops running side by side).
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
_BREAKDOWN = flags.DEFINE_bool(
    "breakdown", False,
    "Also time the parts of each framework's step (its convolutions alone, the step without "
    "BatchNorm, the optimizer update alone) and print where the step's time goes.",
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


@contextlib.contextmanager
def _no_batch_norm():
    """Builds models with an identity layer where each ``BatchNormalization`` would be."""
    import keras

    from slowfast_tf.models.common import torch_layers

    original = torch_layers.BatchNormalization
    torch_layers.BatchNormalization = lambda name=None, **_: keras.layers.Identity(name=name)
    try:
        yield
    finally:
        torch_layers.BatchNormalization = original


def _keras_step(name, image_size, overrides, plain_conv3d=False, no_batch_norm=False):
    import keras

    from slowfast_tf.models import build_model

    keras.utils.set_random_seed(0)
    with contextlib.ExitStack() as stack:
        if plain_conv3d:
            stack.enter_context(_plain_conv3d())
        if no_batch_norm:
            stack.enter_context(_no_batch_norm())
        model = build_model(
            name, num_classes=NUM_CLASSES, train_crop_size=image_size, **overrides
        )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=_JIT.value,
    )
    return model


def _check_no_batch_norm(model, no_bn_model):
    """The model without BatchNorm has none left, and the same convolutions as ``model``."""
    import keras

    def count(m, cls):
        return sum(isinstance(layer, cls) for layer in m.backbone.layers)

    bn = keras.layers.BatchNormalization
    if count(no_bn_model, bn) or not count(model, bn):
        raise AssertionError(
            f"--breakdown: {count(no_bn_model, bn)} BatchNorm layers left of {count(model, bn)}"
        )
    if [c.name for c in _conv_layers(model)] != [c.name for c in _conv_layers(no_bn_model)]:
        raise AssertionError("--breakdown: the model without BatchNorm has other convolutions")


def _torch_device():
    import torch

    # Same device class as Keras: the GPU when torch has CUDA (as bench_inference.py does).
    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_model(model, no_batch_norm=False):
    """PyTorchVideo's model with the Keras ``model``'s architecture, in train mode on
    ``_torch_device()``; ``no_batch_norm`` puts an identity where each ``BatchNorm3d`` was."""
    import torch

    from slowfast_tf.convert import torch_reference

    torch_model = torch_reference.build_ptv_model(_reference_arch(model)).train()
    if no_batch_norm:
        for parent in list(torch_model.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.BatchNorm3d):
                    setattr(parent, child_name, torch.nn.Identity())
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in torch_model.modules()):
            raise AssertionError("--breakdown: PyTorchVideo's model still has a BatchNorm")
    return torch_model.to(_torch_device())


def _torch_inputs(model, clips, labels):
    import torch

    device = _torch_device()
    inputs = [
        torch.from_numpy(clips[k].transpose(0, 4, 1, 2, 3).copy()).to(device)
        for k in _reference_arch(model).pathways
    ]
    return inputs, torch.from_numpy(labels).to(device)


def _torch_step(model, clips, labels, no_batch_norm=False):
    """Returns ``step()`` running one SGD step of PyTorchVideo's equivalent of the Keras
    ``model`` on the batch."""
    import torch

    torch_model = _torch_model(model, no_batch_norm)
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs, target = _torch_inputs(model, clips, labels)

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


def train_step_macs(model, image_size, batch, convs_only=False):
    """Multiply-adds of one training step's convolutions and dense layers (``convs_only``: its
    convolutions): forward, weight gradients and input gradients, the stems' input gradients
    excepted (module docstring)."""
    from slowfast_tf.models.common import flops

    convs = {layer.name for layer in _conv_layers(model)}
    total = 0
    for name, _, macs in flops.layer_flops(
        model, image_size=image_size, batch_size=batch, convention="paper"
    ):
        if convs_only and name.split("/")[-1] not in convs:
            continue
        # The stems (``s1_pathway{i}_stem_conv``) take the clips, which need no gradient.
        total += 2 * macs if name.endswith("stem_conv") else 3 * macs
    return total


def _conv_layers(model):
    import keras

    return [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.Conv3D)]


def _first_element(tensors):
    """One element of each tensor (reading it waits for the tensor, also on a GPU)."""
    import tensorflow as tf

    return tf.stack([t[(0,) * t.shape.rank] for t in tensors])


def _keras_convs_alone(model, clips):
    """Returns ``run()``: each convolution of the Keras ``model``'s backbone on its own, one after
    the other: forward and gradients (input and kernel; the stems' kernel only) at its shapes in
    the model, on random inputs."""
    import keras
    import tensorflow as tf

    convs = _conv_layers(model)
    backbone = model.backbone
    batch = next(iter(clips.values())).shape[0]
    # Each conv's input shape in the model, from one batch-1 forward pass (shapes scale with the batch).
    probe = keras.Model(backbone.input, [layer.input for layer in convs])
    shapes = [(batch, *x.shape[1:]) for x in probe({k: v[:1] for k, v in clips.items()})]
    calls = []
    # One tf.function per conv: TF's warning about functions retraced in a loop is expected.
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    for i, (layer, shape) in enumerate(zip(convs, shapes)):
        x = tf.random.stateless_normal(shape, seed=(1, i))
        dy = tf.random.stateless_normal(layer.compute_output_shape(shape), seed=(2, i))
        stem = layer.name.endswith("stem_conv")

        @tf.function(autograph=False)
        def call(layer=layer, x=x, dy=dy, stem=stem):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            sources = [layer.kernel] if stem else [x, layer.kernel]
            return _first_element(tape.gradient(y, sources, output_gradients=dy))

        call()
        calls.append(call)
    tf.get_logger().setLevel(level)

    def run():
        for call in calls:
            call().numpy()

    return run


def _keras_update_alone(model):
    """Returns ``run()``: one update of the step's optimizer (SGD, momentum 0.9) on variables
    shaped like the model's trainable ones, zero gradients."""
    import keras
    import tensorflow as tf

    variables = [keras.Variable(np.zeros(v.shape, "float32")) for v in model.trainable_variables]
    grads = [tf.zeros(v.shape) for v in variables]
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(variables)
    update = tf.function(lambda: optimizer.apply(grads, variables), autograph=False)
    update()
    return lambda: (update(), variables[-1].numpy())


def _torch_sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _torch_convs_alone(model, clips, labels):
    """Returns ``run()``: as ``_keras_convs_alone``, for PyTorchVideo's equivalent model."""
    import torch

    torch_model = _torch_model(model)
    inputs, _ = _torch_inputs(model, clips, labels)
    shapes = {}
    convs = {n: m for n, m in torch_model.named_modules() if isinstance(m, torch.nn.Conv3d)}
    hooks = [
        conv.register_forward_hook(
            lambda _, args, out, name=name: shapes.__setitem__(name, (args[0].shape, out.shape))
        )
        for name, conv in convs.items()
    ]
    with torch.no_grad():
        torch_model(list(inputs) if len(inputs) > 1 else inputs[0])
    for hook in hooks:
        hook.remove()
    device = _torch_device()
    calls = []
    for name, conv in convs.items():
        in_shape, out_shape = shapes[name]
        stem = conv.in_channels == 3  # the stems take the clips, which need no gradient
        x = torch.randn(in_shape, device=device, requires_grad=not stem)
        dy = torch.randn(out_shape, device=device)
        sources = [conv.weight] if stem else [x, conv.weight]
        calls.append(lambda conv=conv, x=x, dy=dy, s=sources: torch.autograd.grad(conv(x), s, dy))

    def run():
        for call in calls:
            call()
        _torch_sync()

    return run


def _torch_update_alone(model):
    """Returns ``run()``: as ``_keras_update_alone``, with ``torch.optim.SGD`` (as in the step)."""
    import torch

    device = _torch_device()
    params = [
        torch.nn.Parameter(torch.zeros(tuple(v.shape), device=device))
        for v in model.trainable_variables
    ]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    optimizer.step()

    def run():
        optimizer.step()
        _torch_sync()

    return run


def _ceiling_fraction(gflops, seconds, row):
    """Fraction of the row's matmul ceiling reached by ``gflops`` multiply-adds (in GFLOPs, one
    multiply-add = 1) done in ``seconds``; the matmul counts a multiply-add as 2 FLOPs."""
    return 2 * gflops / seconds / row["ceiling_gflops_s"]


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


def _print_breakdown(rows):
    print(
        "\nWhere the step's time goes (medians of the same rounds): convs alone = every "
        "convolution on its own, one after the other (forward, input and kernel gradients at its "
        "shapes in the model; the stems' kernel gradient only); BatchNorm = step - the step of "
        "the same model with an identity for each BatchNorm; update alone = the optimizer's "
        "update on the model's parameter shapes; rest = step - the other three (element-wise "
        "ops, slicing, the loss, framework overhead, and convs running slower inside the "
        "step than alone, or faster)."
    )
    print("| model | crop | batch | framework | step s | convs alone s | conv GFLOPs "
          "| convs alone % of ceiling | BatchNorm s | update alone s | rest s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for key, framework in (("keras", "Keras/TF"), ("torch", "PyTorchVideo")):
            if f"{key}_no_bn_s" not in row:
                continue
            step, convs = row[f"{key}_s"], row[f"{key}_convs_s"]
            batch_norm, update = step - row[f"{key}_no_bn_s"], row[f"{key}_update_s"]
            fraction = None
            if "ceiling_gflops_s" in row:
                fraction = _ceiling_fraction(row["conv_gflops"], convs, row)
            cells = [row["model"], str(row["image_size"]), str(row["batch"]), framework,
                     f"{step:.3f}", f"{convs:.3f}", f"{row['conv_gflops']:.4g}",
                     _percent(fraction), f"{batch_norm:.3f}", f"{update:.3f}",
                     f"{step - convs - batch_norm - update:.3f}"]
            print("| " + " | ".join(cells) + " |")


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
                if _BREAKDOWN.value:
                    steps["keras_no_bn"] = _keras_step(name, size, overrides, no_batch_norm=True)
                    _check_no_batch_norm(steps["keras"], steps["keras_no_bn"])
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
                if _BREAKDOWN.value:
                    fns["keras_convs"] = _keras_convs_alone(steps["keras"], clips)
                    fns["keras_update"] = _keras_update_alone(steps["keras"])
                if _TORCH.value:
                    fns["torch"] = _torch_step(steps["keras"], clips, labels)
                    if _BREAKDOWN.value:
                        fns["torch_no_bn"] = _torch_step(
                            steps["keras"], clips, labels, no_batch_norm=True
                        )
                        fns["torch_convs"] = _torch_convs_alone(steps["keras"], clips, labels)
                        fns["torch_update"] = _torch_update_alone(steps["keras"])
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
                if _BREAKDOWN.value:
                    row["conv_gflops"] = train_step_macs(
                        steps["keras"], size, batch, convs_only=True
                    ) / 1e9
                if matmul_call is not None:
                    # This row's own ceiling: the machine's speed drifts between minutes.
                    row["ceiling_gflops_s"] = ceiling_lib.gflops(ceiling_size, row.pop("matmul_s"))
                    for key in ("keras", "torch"):
                        if f"{key}_s" in row:
                            row[f"{key}_fraction"] = _ceiling_fraction(
                                row["train_gflops"], row[f"{key}_s"], row
                            )
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
    if _BREAKDOWN.value:
        _print_breakdown(rows)


if __name__ == "__main__":
    app.run(main)
