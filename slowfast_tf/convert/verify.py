"""Numerical parity of a converted Keras model against the PyTorchVideo reference.

``verify_against_reference`` loads the same PySlowFast-named state dict into a PyTorchVideo
model, runs both on one random clip and compares every per-stage endpoint (``slow_stem`` ...
``fast_res5``, before the lateral concat) and the logits. The PTV head returns the mean of
the per-position logits, the same quantity as the Keras classifier output.
"""

import dataclasses

import numpy as np

from slowfast_tf.convert import name_maps, torch_reference

# Temporal kernel basis of conv ``a`` per stage (res2..res5), PySlowFast
# _TEMPORAL_KERNEL_BASIS; used to express num_block_temp_kernel as per-block PTV kernels.
_BASIS = {"slow": (1, 1, 3, 3), "fast": (3, 3, 3, 3)}
_STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def reference_arch(model):
    """Describes a Keras SlowFast classifier or detector as a ``ReferenceArch`` for PyTorchVideo.

    The one place that reads a Keras model's architecture for the PyTorchVideo twin: the
    converter's ``--verify``, the parity tests and ``tools/convert_pytorchvideo_slowfast.py``.

    Args:
        model: ``SlowFastVideoClassifier`` or ``SlowFastDetector`` (uses ``model.backbone``
            attributes). A detector maps to ``create_slowfast_with_roi_head`` /
            ``create_resnet_with_roi_head``: SlowFast or Slow-only with the AVA strides
            (res5 spatial stride 1, dilation 2) and the standard temporal kernels.

    Returns:
        ReferenceArch, or None when PyTorchVideo has no equivalent model (non-local blocks,
        Fast-only, depth 18, non-default strides or laterals).
    """
    bb = getattr(model, "backbone", None)
    detector = hasattr(model, "roi_output_size")
    families = ("slowfast", "slow") if detector else ("slowfast", "slow", "c2d", "i3d")
    if bb is None or getattr(bb, "arch", None) not in families:
        return None
    if bb.depth not in _STAGE_DEPTHS or any(bb.nonlocal_locations):
        return None
    if getattr(bb, "lateral_type", "time_strided_conv") != "time_strided_conv":
        return None
    if getattr(bb, "fast_input", "rgb") != "rgb" or bb.fusion_channel_ratio != 2:
        return None
    if getattr(bb, "fast_resolution", "full") != "full":
        return None
    strides, dilations = ((1, 2, 2, 1), (1, 1, 1, 2)) if detector else ((1, 2, 2, 2), (1, 1, 1, 1))
    if tuple(bb.spatial_strides) != strides or tuple(bb.spatial_dilations) != dilations:
        return None
    pathways = tuple(bb.pathways)
    depths = _STAGE_DEPTHS[bb.depth]
    kernels = []
    for p, key in enumerate(pathways):
        per_stage = []
        for j, n_blocks in enumerate(depths):
            n_temp = bb.num_block_temp_kernel[j][p]
            per_stage.append(tuple([_BASIS[key][j]] * n_temp + [1] * (n_blocks - n_temp)))
        kernels.append(tuple(per_stage))
    standard = all(
        bb.num_block_temp_kernel[j][p] >= depths[j] for j in range(4) for p in range(len(pathways))
    )
    if detector:
        if not standard:
            return None
        head_pool_hw = 1  # the RoI head pools the RoIAlign output, not a fixed grid
    else:
        pools = {tuple(v) for v in model.head_pool_size.values()}
        hw = {(h, w) for _, h, w in pools}
        if len(hw) != 1 or len({h for h, _ in hw}) != 1:
            return None
        for key in pathways:
            if model.head_pool_size[key][0] != bb.output_frames[key]:
                return None
        if bb.arch in ("c2d", "i3d") and bb.input_frames["slow"] != 2 * bb.output_frames["slow"]:
            return None
        head_pool_hw = next(iter(hw))[0]
    return torch_reference.ReferenceArch(
        pathways=pathways,
        family=bb.arch,
        depth=bb.depth,
        alpha=bb.alpha,
        beta_inv=bb.beta_inv,
        width=bb.width,
        fusion_kernel=bb.fusion_kernel_size,
        slow_frames=bb.input_frames["slow"],
        head_pool_hw=head_pool_hw,
        num_classes=model.num_classes,
        slow_temporal_kernels=None if standard else kernels[0],
        fast_temporal_kernels=None if standard or len(kernels) < 2 else kernels[1],
    )


def pyslowfast_state_to_ptv(state, arch):
    """PySlowFast-named numpy state -> PTV-named torch state dict for ``arch``."""
    torch = torch_reference.import_torch()
    multipathway = len(arch.pathways) == 2
    return {
        name_maps.pyslowfast_to_ptv(name, multipathway=multipathway): torch.from_numpy(
            np.ascontiguousarray(value, dtype=np.float32)
        )
        for name, value in state.items()
    }


def random_clip(model, crop_size, batch_size=1, seed=0):
    """A normalised-looking random clip dict ``{pathway: [B, T, crop, crop, 3]}`` for ``model``."""
    rng = np.random.default_rng(seed)
    frames = model.backbone.input_frames
    return {
        key: rng.standard_normal((batch_size, frames[key], crop_size, crop_size, 3)).astype(
            np.float32
        )
        for key in model.backbone.pathways
    }


@dataclasses.dataclass
class ParityReport:
    """Per-endpoint and logit differences between Keras and the torch reference.

    Attributes:
        endpoints: list of ``(name, shape, max_abs_diff, max_abs_ref)``.
        logits_max_abs_diff: float or None (None when the head was not compared).
        logits_max_abs: float or None, ``max |reference logit|``.
        top1_agree: float or None, fraction of clips with the same top-1 class.
        top5_equal: bool or None, identical top-5 lists (in order) for every clip.
    """

    endpoints: list
    logits_max_abs_diff: float | None = None
    logits_max_abs: float | None = None
    top1_agree: float | None = None
    top5_equal: bool | None = None

    @property
    def logits_relative_diff(self):
        if self.logits_max_abs_diff is None:
            return None
        return self.logits_max_abs_diff / max(self.logits_max_abs, 1e-12)

    @property
    def worst_endpoint_relative_diff(self):
        return max((d / max(r, 1e-12) for _, _, d, r in self.endpoints), default=0.0)

    def format(self):
        rows = [f"{'endpoint':<12} {'shape':<24} {'max|diff|':>11} {'max|ref|':>11} {'rel':>9}"]
        for name, shape, diff, ref in self.endpoints:
            rows.append(
                f"{name:<12} {str(tuple(shape)):<24} {diff:>11.3e} {ref:>11.3e} "
                f"{diff / max(ref, 1e-12):>9.2e}"
            )
        if self.logits_max_abs_diff is not None:
            rows.append(
                f"{'logits':<12} {'':<24} {self.logits_max_abs_diff:>11.3e} "
                f"{self.logits_max_abs:>11.3e} {self.logits_relative_diff:>9.2e}"
            )
            rows.append(
                f"top-1 agreement: {self.top1_agree:.0%}; identical top-5: {self.top5_equal}"
            )
        else:
            rows.append("logits: not compared (the head was not converted)")
        return "\n".join(rows)


def compare_outputs(keras_logits, keras_endpoints, ref_logits, ref_endpoints, compare_head=True):
    """Builds a ParityReport from numpy outputs of both frameworks."""
    rows = []
    for name, ref in ref_endpoints.items():
        ours = np.asarray(keras_endpoints[name])
        if ours.shape != ref.shape:
            raise ValueError(
                f"Endpoint {name!r} shapes differ: Keras {ours.shape} vs reference {ref.shape}"
            )
        rows.append(
            (name, ref.shape, float(np.max(np.abs(ours - ref))), float(np.max(np.abs(ref))))
        )
    report = ParityReport(endpoints=rows)
    if compare_head:
        keras_logits, ref_logits = np.asarray(keras_logits), np.asarray(ref_logits)
        report.logits_max_abs_diff = float(np.max(np.abs(keras_logits - ref_logits)))
        report.logits_max_abs = float(np.max(np.abs(ref_logits)))
        report.top1_agree = float(np.mean(np.argmax(keras_logits, -1) == np.argmax(ref_logits, -1)))
        top5 = lambda x: np.argsort(-x, axis=-1)[:, :5]  # noqa: E731
        report.top5_equal = bool(np.array_equal(top5(keras_logits), top5(ref_logits)))
    return report


def _probe_model(model):
    """A functional model sharing ``model``'s layers that returns logits and all endpoints in
    one pass (cached on the model). Falls back to None if the head layout is unknown."""
    import keras

    probe = getattr(model, "_parity_probe", None)
    if probe is not None:
        return probe
    needed = ("head_pools", "head_projection", "head_dropout", "logits_mean", "pathways")
    if not all(hasattr(model, a) for a in needed):
        return None
    inputs = {
        k: keras.Input(shape=model.backbone.input[k].shape[1:], name=k) for k in model.pathways
    }
    endpoints = model.backbone(inputs)
    pooled = [model.head_pools[k](endpoints[f"{k}_res5"]) for k in model.pathways]
    features = model.head_concat(pooled) if len(pooled) > 1 else pooled[0]
    logits = model.logits_mean(model.head_projection(model.head_dropout(features)))
    probe = keras.Model(inputs, {"__logits__": logits, **endpoints})
    model._parity_probe = probe
    return probe


def run_keras(model, inputs):
    """Keras logits and backbone endpoints (inference mode) as numpy."""
    probe = _probe_model(model)
    if probe is None:
        logits = np.asarray(model(inputs, training=False))
        endpoints = {k: np.asarray(v) for k, v in model.backbone(inputs, training=False).items()}
        return logits, endpoints
    outputs = {k: np.asarray(v) for k, v in probe(inputs, training=False).items()}
    return outputs.pop("__logits__"), outputs


def build_reference_for(model, state, compare_head=True):
    """Builds the PyTorchVideo twin of ``model`` holding ``state``.

    Args:
        model: Keras classifier.
        state: PySlowFast-named numpy state dict (torch layouts).
        compare_head: bool, False to leave the PTV head at init (Keras head not converted).

    Returns:
        ``(reference, arch)``, or ``(None, None)`` when PyTorchVideo has no equivalent model.
    """
    arch = reference_arch(model)
    if arch is None:
        return None, None
    if not compare_head:
        head = state.get(name_maps.HEAD_WEIGHT)
        if head is not None:
            arch = dataclasses.replace(arch, num_classes=int(head.shape[0]))
    reference = torch_reference.build_ptv_model(arch)
    ptv_state = pyslowfast_state_to_ptv(
        {k: v for k, v in state.items() if compare_head or not k.startswith("head.")}, arch
    )
    missing, unexpected = reference.load_state_dict(ptv_state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if not compare_head:
        missing = [m for m in missing if ".proj." not in m]
    if missing or unexpected:
        raise ValueError(
            f"The PyTorchVideo reference did not take the state: missing={missing[:10]}, "
            f"unexpected={unexpected[:10]}"
        )
    return reference, arch


def verify_against_reference(
    model, state, crop_size=None, batch_size=1, seed=0, compare_head=True, inputs=None
):
    """Runs the PyTorchVideo reference with ``state`` and compares it to ``model``.

    Args:
        model: converted Keras classifier (weights already loaded from ``state``).
        state: PySlowFast-named numpy state dict (torch layouts), e.g. from
            ``checkpoints.read_checkpoint``.
        crop_size: int, clip side; defaults to the model's train crop (224 for the presets).
        batch_size: int.
        seed: int, clip seed.
        compare_head: bool, False when the Keras head was not converted (fine-tuning).
        inputs: optional Keras input dict to use instead of a random clip.

    Returns:
        ParityReport, or None when PyTorchVideo has no equivalent model.
    """
    reference, arch = build_reference_for(model, state, compare_head)
    if reference is None:
        return None
    if inputs is None:
        inputs = random_clip(model, crop_size or model.train_crop_size, batch_size, seed)
    ref_logits, ref_endpoints = torch_reference.run_reference(reference, inputs, arch)
    keras_logits, keras_endpoints = run_keras(model, inputs)
    return compare_outputs(keras_logits, keras_endpoints, ref_logits, ref_endpoints, compare_head)
