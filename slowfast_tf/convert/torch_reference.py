"""The PyTorchVideo reference side of the parity checks (``--verify``, tests, tools script).

Builds PyTorchVideo's SlowFast / Slow ResNets with the same architecture as a Keras preset,
randomises their BatchNorm statistics (so conversion bugs in BN cannot hide behind identity
statistics) and runs them with forward hooks that capture the per-stage endpoints in the
Keras layout ``[B, T, H, W, C]``.

pytorchvideo 0.1.5 imports ``torchvision.ops.RoIAlign`` at module import time, only for the
detection heads. torchvision is not needed otherwise (and does not install next to this
torch build), so :func:`import_pytorchvideo` registers a minimal stub when the real package is
missing.
"""

import dataclasses
import importlib.util
import sys
import types

import numpy as np

from slowfast_tf.convert.checkpoints import import_torch


def _install_torchvision_stub():
    """Registers ``torchvision`` / ``torchvision.ops`` stubs with a RoIAlign that refuses use."""

    class RoIAlign:  # noqa: D401 - stub
        def __init__(self, *args, **kwargs):
            raise ImportError(
                "torchvision is not installed: the pytorchvideo ROI (detection) heads are "
                "unavailable; classification models work without it."
            )

    torchvision = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.RoIAlign = RoIAlign
    torchvision.ops = ops
    torchvision.__stub__ = True
    sys.modules["torchvision"] = torchvision
    sys.modules["torchvision.ops"] = ops


def import_pytorchvideo():
    """Imports ``pytorchvideo.models`` (stubbing torchvision if absent) and returns it."""
    import_torch()
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        _install_torchvision_stub()
    try:
        import pytorchvideo.models as ptv_models
    except ImportError as e:
        raise ImportError(
            "The torch reference needs pytorchvideo (`pip install pytorchvideo==0.1.5`)."
        ) from e
    return ptv_models


@dataclasses.dataclass(frozen=True)
class ReferenceArch:
    """The architecture facts a PyTorchVideo reference needs.

    Attributes:
        pathways: tuple, ``("slow", "fast")`` for SlowFast or ``("slow",)`` otherwise.
        family: str, ``"slowfast"``, ``"slow"``, ``"c2d"`` or ``"i3d"``; C2D and I3D use the
            PyTorchVideo hub settings of ``c2d_r50`` / ``i3d_r50`` (temporal max-pool /2 after
            res2, their own conv ``a`` temporal kernels).
        depth: int, 50 or 101.
        alpha: int, slow/fast frame-rate ratio (fusion temporal stride).
        beta_inv: int, slow/fast channel ratio.
        width: int, stem width of the slow pathway (64; smaller widths give cheap tests).
        fusion_kernel: int, temporal kernel of the lateral convs (7 for 8x8 R50, else 5).
        slow_frames: int, slow-pathway input frames (the head pool's temporal size, halved
            for C2D / I3D).
        head_pool_hw: int, spatial size of the head average pool (crop // 32 for a 1x1 grid).
        num_classes: int.
        slow_temporal_kernels / fast_temporal_kernels: per-stage (res2..res5) tuples of
            per-block temporal kernels of conv ``a``; None uses the standard R50 bases.
    """

    pathways: tuple = ("slow", "fast")
    family: str = "slowfast"
    depth: int = 50
    alpha: int = 4
    beta_inv: int = 8
    width: int = 64
    fusion_kernel: int = 7
    slow_frames: int = 8
    head_pool_hw: int = 7
    num_classes: int = 400
    slow_temporal_kernels: tuple | None = None
    fast_temporal_kernels: tuple | None = None

    @property
    def fast_frames(self):
        return self.slow_frames * self.alpha


def _conv_a_sizes(per_stage):
    """Per-stage per-block temporal kernels -> PTV conv_a kernel tuples."""
    return tuple(tuple((int(k), 1, 1) for k in stage) for stage in per_stage)


def build_ptv_model(arch):
    """Builds the PyTorchVideo model for ``arch`` (random weights, eval mode).

    Args:
        arch: ReferenceArch.

    Returns:
        torch.nn.Module taking ``[slow, fast]`` (SlowFast) or a tensor (Slow), NCTHW.
    """
    ptv = import_pytorchvideo()
    hw = arch.head_pool_hw
    if tuple(arch.pathways) == ("slow", "fast"):
        kwargs = {}
        if arch.slow_temporal_kernels is not None:
            kwargs["stage_conv_a_kernel_sizes"] = (
                _conv_a_sizes(arch.slow_temporal_kernels),
                _conv_a_sizes(arch.fast_temporal_kernels),
            )
        model = ptv.create_slowfast(
            **_slowfast_factory_kwargs(arch),
            head_pool_kernel_sizes=((arch.slow_frames, hw, hw), (arch.fast_frames, hw, hw)),
            **kwargs,
        )
    elif arch.family in ("slow", "c2d", "i3d"):
        kwargs = {}
        if arch.family == "slow":
            stem_t, pool_t = 1, 1
            if arch.slow_temporal_kernels is not None:
                kwargs["stage_conv_a_kernel_size"] = _conv_a_sizes(arch.slow_temporal_kernels)
        else:
            # PyTorchVideo hub c2d_r50 / i3d_r50 (pytorchvideo/models/hub/resnet.py): an
            # independent statement of the architecture, not derived from the Keras presets.
            stem_t, pool_t = (1, 2) if arch.family == "c2d" else (5, 2)
            kwargs["stage1_pool"] = import_torch().nn.MaxPool3d
            if arch.family == "c2d":
                kwargs["stage_conv_a_kernel_size"] = ((1, 1, 1),) * 4
            else:
                kwargs["stage_conv_a_kernel_size"] = (
                    (3, 1, 1),
                    [(3, 1, 1), (1, 1, 1)],
                    [(3, 1, 1), (1, 1, 1)],
                    [(1, 1, 1), (3, 1, 1)],
                )
        model = ptv.create_resnet(
            model_depth=arch.depth,
            model_num_class=arch.num_classes,
            stem_dim_out=arch.width,
            stem_conv_kernel_size=(stem_t, 7, 7),
            head_pool_kernel_size=(arch.slow_frames // pool_t, hw, hw),
            **kwargs,
        )
    else:
        raise ValueError(
            "The PyTorchVideo reference supports SlowFast, Slow, C2D and I3D. "
            f"Received: family={arch.family!r}, pathways={arch.pathways}"
        )
    return model.eval()


def randomize_batch_norm_(model, inputs, seed=0):
    """Gives every BatchNorm realistic but random statistics and affine parameters.

    A random network with identity BN statistics lets a swapped mean/var or gamma/beta go
    unnoticed, and purely random statistics make activations blow up or vanish over 50
    layers. So the statistics are first measured on ``inputs`` (one train-mode pass with a
    cumulative average), then perturbed: mean += N(0, 0.2 std), var *= U(0.5, 2),
    gamma ~ U(0.5, 1.5) (x0.2 on each block's last BN), beta ~ N(0, 0.2).

    Args:
        model: torch module (left in eval mode).
        inputs: the model input used to measure the statistics.
        seed: int.
    """
    torch = import_torch()
    generator = torch.Generator().manual_seed(seed)
    norms = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    for _, m in norms:
        m.reset_running_stats()
        m.momentum = None  # Cumulative average: one batch gives exactly its statistics.
    model.train()
    with torch.no_grad():
        model(inputs)
        for name, m in norms:
            n = m.num_features

            def rand(*shape):
                return torch.rand(*shape, generator=generator)

            std = m.running_var.sqrt()
            m.running_mean += 0.2 * std * torch.randn(n, generator=generator)
            m.running_var *= 0.5 + 1.5 * rand(n)
            # The last BN of a residual branch gets a small gamma (as zero-init would in
            # training) so 16 residual additions do not grow activations by 1e5.
            final = name.endswith(("norm_c", "c_bn"))
            m.weight.copy_((0.5 + rand(n)) * (0.2 if final else 1.0))
            m.bias.copy_(0.2 * torch.randn(n, generator=generator))
            m.momentum = 0.1
    model.eval()


def endpoint_modules(model, arch):
    """``{endpoint: module}`` whose outputs equal the Keras backbone endpoints.

    Endpoints are the per-pathway outputs of the stem and of each residual stage, before the
    lateral fusion is concatenated (PTV applies the fusion in a separate sub-module).
    """
    names = {1: "stem", 2: "res2", 3: "res3", 4: "res4", 5: "res5"}
    modules = {}
    if tuple(arch.pathways) == ("slow", "fast"):
        for stage in range(1, 6):
            for p, pathway in enumerate(arch.pathways):
                block = model.blocks[stage - 1].multipathway_blocks[p]
                modules[f"{pathway}_{names[stage]}"] = block
    else:
        res_blocks = [b for b in model.blocks if hasattr(b, "res_blocks")]
        modules["slow_stem"] = model.blocks[0]
        for stage, block in zip(range(2, 6), res_blocks):
            modules[f"slow_{names[stage]}"] = block
    return modules


def to_torch_inputs(inputs, arch):
    """Keras input dict ``{"slow": [B,T,H,W,C], ...}`` -> the PTV model input (NCTHW)."""
    torch = import_torch()
    tensors = [
        torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(inputs[p]), (0, 4, 1, 2, 3))))
        for p in arch.pathways
    ]
    return tensors if len(tensors) > 1 else tensors[0]


def run_reference(model, inputs, arch, with_endpoints=True):
    """Runs the PTV model on a Keras input dict.

    Returns:
        ``(logits, endpoints)``: ``[B, classes]`` numpy logits (PTV head = mean of per-position
        logits) and ``{endpoint: [B, T, H, W, C]}`` numpy arrays (empty if not requested).
    """
    torch = import_torch()
    captured, handles = {}, []
    if with_endpoints:
        for name, module in endpoint_modules(model, arch).items():

            def hook(_module, _inputs, output, name=name):
                captured[name] = output.detach().permute(0, 2, 3, 4, 1).numpy().copy()

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(to_torch_inputs(inputs, arch)).numpy()
    finally:
        for handle in handles:
            handle.remove()
    return logits, captured


# --------------------------------------------------------------------------------------------
# Detection (AVA): a torch RoIAlign for the PyTorchVideo ROI head
# --------------------------------------------------------------------------------------------


def _torch_roi_corners(start, bin_size, n_bins, grid, limit):
    """Bilinear corner indices and weights of one box's samples along one axis (torchvision's
    ``bilinear_interpolate``: samples outside ``[-1, limit]`` weigh 0, others are clamped)."""
    torch = import_torch()
    bins = torch.arange(n_bins, dtype=torch.float32)[:, None]
    samples = torch.arange(grid, dtype=torch.float32)[None, :]
    pos = (start + bins * bin_size) + ((samples + 0.5) * bin_size) / float(grid)
    pos = pos.reshape(-1)
    valid = ((pos >= -1.0) & (pos <= limit)).to(torch.float32)
    pos = torch.clamp(pos, min=0.0)
    low = pos.floor().long()
    edge = low >= limit - 1
    low = torch.where(edge, torch.full_like(low, limit - 1), low)
    high = torch.where(edge, low, low + 1)
    pos = torch.where(edge, low.to(torch.float32), pos)
    frac = pos - low.to(torch.float32)
    return low, high, (1.0 - frac) * valid, frac * valid


def torch_roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=False):
    """RoIAlign in plain torch with torchvision's semantics (forward only).

    Written independently of the Keras version: one box at a time with its adaptive sampling
    grid as a Python int, bilinear corners gathered by index (torchvision's own structure),
    and checked against the NumPy definition in ``slowfast_tf/testing/roi_align_reference.py``.

    Args:
        features: ``[N, C, H, W]`` tensor.
        rois: ``[K, 5]`` tensor of ``(batch_index, x1, y1, x2, y2)``.
        output_size: int or ``(out_h, out_w)``.
        spatial_scale, sampling_ratio, aligned: as ``torchvision.ops.roi_align``.

    Returns:
        ``[K, C, out_h, out_w]`` tensor.
    """
    torch = import_torch()
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = features.shape[-2:]
    offset = 0.5 if aligned else 0.0
    outputs = []
    for roi in rois.to(torch.float32):
        image = features[int(roi[0].item())]
        start = roi[1:3] * spatial_scale - offset  # (x, y)
        size = roi[3:5] * spatial_scale - offset - start
        if not aligned:
            size = torch.clamp(size, min=1.0)
        pooled = torch.tensor([out_w, out_h], dtype=torch.float32)
        bin_size = size / pooled
        if sampling_ratio > 0:
            grid = [sampling_ratio, sampling_ratio]
        else:
            grid = [int(v) for v in torch.ceil(size / pooled).tolist()]
        count = max(grid[0] * grid[1], 1)
        if grid[0] <= 0 or grid[1] <= 0:
            outputs.append(torch.zeros(image.shape[0], out_h, out_w, dtype=features.dtype))
            continue

        x_low, x_high, wx_low, wx_high = _torch_roi_corners(
            start[0], bin_size[0], out_w, grid[0], width
        )
        y_low, y_high, wy_low, wy_high = _torch_roi_corners(
            start[1], bin_size[1], out_h, grid[1], height
        )
        value = 0.0
        for rows, wy in ((y_low, wy_low), (y_high, wy_high)):
            for cols, wx in ((x_low, wx_low), (x_high, wx_high)):
                gathered = image[:, rows][:, :, cols]  # [C, out_h*gy, out_w*gx]
                value = value + gathered * wy[None, :, None] * wx[None, None, :]
        value = value.reshape(image.shape[0], out_h, grid[1], out_w, grid[0])
        outputs.append(value.sum(dim=(2, 4)) / count)
    if not outputs:
        return features.new_zeros((0, features.shape[1], out_h, out_w))
    return torch.stack(outputs)


def torch_roi_align_module():
    """A ``torchvision.ops.RoIAlign``-compatible ``nn.Module`` class built on
    :func:`torch_roi_align` (torchvision itself does not install next to this torch)."""
    torch = import_torch()

    class TorchRoIAlign(torch.nn.Module):
        def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
            super().__init__()
            self.output_size = output_size
            self.spatial_scale = spatial_scale
            self.sampling_ratio = sampling_ratio
            self.aligned = aligned

        def forward(self, features, rois):
            return torch_roi_align(
                features, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                self.aligned,
            )

    return TorchRoIAlign


def build_ptv_detector(arch, aligned=False):
    """PyTorchVideo ``create_slowfast_with_roi_head`` (SlowFast) or ``create_resnet_with_roi_head``
    (Slow-only) for ``arch``, eval mode.

    The head's RoIAlign is :func:`torch_roi_align_module` (torchvision is not installable
    here): ``create_res_roi_pooling_head`` binds ``roi=torchvision.ops.RoIAlign`` as a default
    argument at import time, so the default is swapped for the duration of the build only.

    Args:
        arch: ``ReferenceArch`` of a SlowFast or Slow-only network; ``head_pool_hw`` is ignored
            (the detector pools time only), ``num_classes`` sizes the projection.
        aligned: bool, RoIAlign ``aligned`` (PyTorchVideo's own model uses False).

    Returns:
        ``DetectionBBoxNetwork`` taking ``([slow, fast] or slow, rois [K, 5])`` and returning
        the per-box sigmoid probabilities ``[K, num_classes]``.
    """
    import functools

    import_pytorchvideo()
    slowfast = tuple(arch.pathways) == ("slow", "fast")
    if not slowfast and (tuple(arch.pathways) != ("slow",) or arch.family != "slow"):
        raise ValueError(
            "The PyTorchVideo detector reference is SlowFast or Slow-only. "
            f"Received: pathways={arch.pathways}, family={arch.family!r}"
        )
    from pytorchvideo.models import head as ptv_head
    from pytorchvideo.models.resnet import create_resnet_with_roi_head
    from pytorchvideo.models.slowfast import create_slowfast_with_roi_head

    kwargs = {}
    if arch.slow_temporal_kernels is not None and slowfast:
        kwargs["stage_conv_a_kernel_sizes"] = (
            _conv_a_sizes(arch.slow_temporal_kernels),
            _conv_a_sizes(arch.fast_temporal_kernels),
        )
    elif arch.slow_temporal_kernels is not None:
        kwargs["stage_conv_a_kernel_size"] = _conv_a_sizes(arch.slow_temporal_kernels)
    defaults = ptv_head.create_res_roi_pooling_head.__kwdefaults__
    previous = defaults["roi"]
    defaults["roi"] = functools.partial(torch_roi_align_module(), aligned=aligned)
    try:
        if not slowfast:
            model = create_resnet_with_roi_head(
                model_depth=arch.depth,
                model_num_class=arch.num_classes,
                stem_dim_out=arch.width,
                head_pool_kernel_size=(arch.slow_frames, 1, 1),
                **kwargs,
            )
            return model.eval()
        model = create_slowfast_with_roi_head(
            **_slowfast_factory_kwargs(arch),
            head_pool_kernel_sizes=((arch.slow_frames, 1, 1), (arch.fast_frames, 1, 1)),
            **kwargs,
        )
    finally:
        defaults["roi"] = previous
    return model.eval()


def run_ptv_detector(model, inputs, boxes, box_mask, arch):
    """Runs a PTV detector on the Keras detector's inputs.

    Args:
        model: from :func:`build_ptv_detector`.
        inputs: Keras input dict (clips ``[B, T, H, W, 3]``).
        boxes: ``[B, M, 4]`` normalised ``(x1, y1, x2, y2)``; converted to input pixels and
            ``(batch_index, x1, y1, x2, y2)`` rows as PySlowFast's ``detection_collate``.
        box_mask: ``[B, M]``, rows with mask 0 are not sent.

    Returns:
        ``[B, M, classes]`` numpy probabilities (0 where ``box_mask`` is 0).
    """
    torch = import_torch()
    boxes = np.asarray(boxes, np.float32)
    height, width = np.asarray(inputs[arch.pathways[0]]).shape[2:4]
    scale = np.array([width, height, width, height], np.float32)
    index = np.nonzero(np.asarray(box_mask) > 0)
    rois = np.concatenate(
        [index[0][:, None].astype(np.float32), boxes[index] * scale], axis=1
    )
    with torch.no_grad():
        probabilities = model(to_torch_inputs(inputs, arch), torch.from_numpy(rois)).numpy()
    out = np.zeros(boxes.shape[:2] + (probabilities.shape[-1],), np.float32)
    out[index] = probabilities
    return out


def _slowfast_factory_kwargs(arch) -> dict:
    """The PyTorchVideo SlowFast factory arguments shared by the classifier and the detector."""
    return dict(
        model_depth=arch.depth,
        model_num_class=arch.num_classes,
        slowfast_channel_reduction_ratio=(arch.beta_inv,),
        slowfast_fusion_conv_kernel_size=(arch.fusion_kernel, 1, 1),
        slowfast_fusion_conv_stride=(arch.alpha, 1, 1),
        stem_dim_outs=(arch.width, arch.width // arch.beta_inv),
    )
