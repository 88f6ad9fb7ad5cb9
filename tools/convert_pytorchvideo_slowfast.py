r"""Convert a PyTorchVideo / PySlowFast SlowFast checkpoint and check it against PyTorchVideo.

Prints, for one uint8 clip:
1. the preprocessing difference between PySlowFast / PyTorchVideo (``x / 255``, mean 0.45,
   std 0.225, ``PackPathway`` with ``torch.linspace(...).long()``) and ``slowfast_tf.data``;
2. the per-stage endpoint differences and the logit difference on identical inputs;
3. the end-to-end logit difference (each framework's own preprocessing) and top-1 agreement.

Usage (a downloaded hub checkpoint; ~1 min on CPU)::

    python tools/convert_pytorchvideo_slowfast.py --preset=slowfast_r50_8x8 \
        --checkpoint=SLOWFAST_8x8_R50.pyth --source=pytorchvideo \
        --output_file=slowfast_r50_8x8_k400.weights.h5

Without ``--checkpoint`` a PyTorchVideo model with random weights and random BN statistics
stands in for the checkpoint (what the ``large`` test runs). Exit status 1 when the relative
logit difference exceeds ``--tolerance``.
"""

import sys

import numpy as np
from absl import app, flags

_PRESET = flags.DEFINE_string("preset", "slowfast_r50_8x8", "slowfast_tf preset name.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "PTV / PySlowFast .pyth or Caffe2 .pkl; default: random PTV model."
)
_SOURCE = flags.DEFINE_enum(
    "source", "pytorchvideo", ["pytorchvideo", "pyslowfast", "caffe2"], "Checkpoint format."
)
_CROP = flags.DEFINE_integer("crop", None, "Clip side; default: the model's train crop (224).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random clip.")
_OUTPUT = flags.DEFINE_string("output_file", None, "Optional output *.weights.h5.")
_TOLERANCE = flags.DEFINE_float("tolerance", 1e-4, "Max |logit diff| / max |logit|.")
_OVERRIDES = flags.DEFINE_string(
    "model_overrides", "{}", 'JSON dict of build_model overrides (e.g. \'{"width": 16}\' for a quick check).'
)
# Deprecated spellings, accepted for one release (slowfast_tf/utils/cli_flags.py).
RENAMES = {"--output": "--output_file"}


def reference_preprocess(clip_uint8, alpha, pathways):
    """PySlowFast / PyTorchVideo preprocessing in torch: [T,H,W,3] uint8 -> Keras input dict."""
    import torch

    x = torch.from_numpy(clip_uint8).float() / 255.0
    x = (x - 0.45) / 0.225  # PySlowFast DATA.MEAN / DATA.STD, applied per RGB channel.
    x = x.permute(3, 0, 1, 2)  # CTHW, as PySlowFast datasets return clips.
    if tuple(pathways) == ("slow", "fast"):
        index = torch.linspace(0, x.shape[1] - 1, x.shape[1] // alpha).long()
        packed = {"slow": torch.index_select(x, 1, index), "fast": x}
    else:
        packed = {pathways[0]: x}
    return {k: v.permute(1, 2, 3, 0).unsqueeze(0).numpy() for k, v in packed.items()}


def ours_preprocess(clip_uint8, alpha, pathways):
    """slowfast_tf.data preprocessing: normalize + pack_pathways."""
    from slowfast_tf.data import transforms

    frames = transforms.normalize(clip_uint8, (0.45,) * 3, (0.225,) * 3)
    packed = transforms.pack_pathways(frames, alpha, tuple(pathways))
    return {k: np.asarray(v)[None] for k, v in packed.items()}


def run(preset, checkpoint, source, crop, seed, output, tolerance, overrides):
    """Runs the check; returns the exit status."""
    from slowfast_tf.convert import (
        checkpoints,
        keras_loader,
        name_maps,
        torch_reference,
        verify,
    )
    from slowfast_tf.models import build_model
    from slowfast_tf.testing import parity_fixtures
    from slowfast_tf.utils import cli_flags

    overrides = cli_flags.json_dict(overrides, "model_overrides")
    state = None
    if checkpoint:
        state, unmapped, ignored = checkpoints.read_checkpoint(checkpoint, source)
        head = state.get(name_maps.HEAD_WEIGHT)
        num_classes = 400 if head is None else int(head.shape[0])
    else:
        unmapped, ignored, num_classes = [], [], 400
    model = build_model(preset, num_classes=num_classes, **overrides)
    crop = crop or model.train_crop_size
    bb = model.backbone
    total = bb.input_frames.get("fast", bb.input_frames.get("slow"))
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 256, (total, crop, crop, 3), dtype=np.uint8)
    alpha = getattr(bb, "alpha", 1)
    ref_inputs = reference_preprocess(clip, alpha, bb.pathways)
    our_inputs = ours_preprocess(clip, alpha, bb.pathways)
    print(f"== preprocessing ({total} frames, {crop}x{crop}, alpha {alpha})")
    for key in bb.pathways:
        diff = float(np.max(np.abs(ref_inputs[key] - our_inputs[key])))
        print(f"{key:<5} input {str(our_inputs[key].shape):<22} max|diff| {diff:.3e}")

    if state is None:
        arch = verify.reference_arch(model)
        if arch is None:
            print(f"PyTorchVideo has no reference for preset {preset}")
            return 1
        reference = parity_fixtures.make_reference(arch, ref_inputs, seed=seed)
        state = parity_fixtures.pyslowfast_state_from_ptv(reference.state_dict())
        state = {k: v for k, v in state.items() if not name_maps.is_ignored_torch_name(k)}
    report = keras_loader.load_pyslowfast_state_into(
        model, state, source=source, unmapped=unmapped, ignored=ignored
    )
    print(report)
    if output:
        model.save_weights(output)
        print(f"Wrote {output}")

    reference, arch = verify.build_reference_for(model, state)
    if reference is None:
        print(f"PyTorchVideo has no reference for preset {preset}; conversion done, no check")
        return 0
    print("== model parity on identical inputs")
    ref_logits, ref_endpoints = torch_reference.run_reference(reference, our_inputs, arch)
    keras_logits, keras_endpoints = verify.run_keras(model, our_inputs)
    parity = verify.compare_outputs(keras_logits, keras_endpoints, ref_logits, ref_endpoints)
    print(parity.format())
    print("== end to end (each framework's own preprocessing)")
    e2e_logits, _ = torch_reference.run_reference(reference, ref_inputs, arch, with_endpoints=False)
    e2e = float(np.max(np.abs(e2e_logits - keras_logits)))
    same_top1 = bool(np.argmax(e2e_logits) == np.argmax(keras_logits))
    print(f"logits max|diff| {e2e:.3e}; top-1 match: {same_top1}")
    relative = max(parity.logits_relative_diff, e2e / max(parity.logits_max_abs, 1e-12))
    ok = relative <= tolerance and same_top1 and parity.top1_agree == 1.0
    print(
        f"{'PASS' if ok else 'FAIL'}: relative logit difference {relative:.2e} (tol {tolerance:.0e})"
    )
    return 0 if ok else 1


def main(argv):
    del argv
    return run(
        _PRESET.value,
        _CHECKPOINT.value,
        _SOURCE.value,
        _CROP.value,
        _SEED.value,
        _OUTPUT.value,
        _TOLERANCE.value,
        _OVERRIDES.value,
    )


if __name__ == "__main__":
    from slowfast_tf.utils import cli_flags

    argv = [sys.argv[0], *cli_flags.rewrite_deprecated(sys.argv[1:], RENAMES, "convert_pytorchvideo_slowfast.py")]
    sys.exit(app.run(main, argv=argv))
