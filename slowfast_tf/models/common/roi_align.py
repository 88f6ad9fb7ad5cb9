"""RoIAlign (He et al., Mask R-CNN 2017) in ``keras.ops``, with torchvision / detectron2 numerics.

Definition followed (torchvision ``roi_align`` forward, which detectron2's ``ROIAlign`` calls):
for a box ``(x1, y1, x2, y2)`` and output bin ``(ph, pw)``

- ``start = x1 * spatial_scale - offset`` (``offset = 0.5`` when ``aligned`` else 0), likewise
  ``end``; ``size = end - start``, clamped to ``>= 1`` only when ``aligned=False``;
  ``bin = size / pooled``.
- ``grid = sampling_ratio`` if it is > 0, else ``ceil(size / pooled)`` (adaptive, per box).
- samples ``y_k = start + ph * bin + (k + 0.5) * bin / grid`` for ``k < grid`` (same for x);
  the bin value is the sum of bilinear samples divided by ``max(grid_h * grid_w, 1)``.
- bilinear sampling: a sample with ``y < -1`` or ``y > H`` (or x likewise) is 0; otherwise the
  coordinate is clamped to ``>= 0`` and, at the last row/column, to ``H - 1``.

Static shapes. The adaptive grid depends on the data, so a literal port has data-dependent
loop lengths. Here the sampling is written as two interpolation matrices: bilinear
interpolation, the out-of-range rule and the count ``grid_h * grid_w`` all factor into a y part
and an x part, so ``out[ph, pw] = sum_{h,w} A_y[ph, h] * A_x[pw, w] * F[h, w]`` with
``A_y[ph, h] = (1 / grid_h) * sum_k weight of sample y_k on row h``. Only samples inside
``[-1, H]`` contribute, and with an adaptive grid consecutive samples are ``bin / ceil(bin) >
0.5`` pixels apart (or there is only one), so at most ``2 H + 3`` samples per bin matter. Each
bin therefore evaluates a fixed window of ``2 H + 6`` sample indices starting just below the
first in-range one, masked by ``k < grid``. This equals the adaptive result exactly for **any**
box size: there is no maximum sampling grid (a fixed ``sampling_ratio`` evaluates exactly
``sampling_ratio`` samples per bin and axis). The cost is two small ``[M, pooled, H]`` /
``[M, pooled, W]`` matrices per box and two einsums, the same shape for every input.
"""

import keras
from keras import ops

__all__ = ["RoIAlign", "roi_align"]


def _axis_weights(lo, hi, pooled, length, static_length, spatial_scale, sampling_ratio, aligned):
    """Interpolation matrix ``[..., pooled, length]`` for one axis (x or y) of every box."""
    offset = 0.5 if aligned else 0.0
    start = lo * spatial_scale - offset
    end = hi * spatial_scale - offset
    size = end - start
    if not aligned:
        size = ops.maximum(size, 1.0)
    bin_size = size / float(pooled)
    if sampling_ratio > 0:
        grid = ops.full_like(size, float(sampling_ratio))
        window = int(sampling_ratio)
    else:
        grid = ops.ceil(size / float(pooled))
        # 2 L + 3 samples can fall in [-1, L]; 3 more absorb the rounding of ``first`` below.
        window = 2 * static_length + 6 if static_length is not None else 2 * length + 6
    grid_safe = ops.maximum(grid, 1.0)
    bins = ops.cast(ops.arange(pooled), size.dtype)
    # torchvision's order of operations: (start + p * bin) + ((k + 0.5) * bin) / grid.
    base = start[..., None] + bins * bin_size[..., None]  # [..., pooled]
    if sampling_ratio > 0:
        first = ops.zeros_like(base)
    else:
        step = bin_size / grid_safe
        first = ops.floor((-1.0 - base) / step[..., None] - 0.5) - 1.0
        # One sample per bin (grid <= 1): k = 0 only. Otherwise start below the first sample
        # that can land in [-1, L] (k >= 0 always).
        first = ops.where(grid[..., None] > 1.0, ops.maximum(first, 0.0), 0.0)
    k = first[..., None] + ops.cast(ops.arange(window), size.dtype)  # [..., pooled, window]
    pos = base[..., None] + ((k + 0.5) * bin_size[..., None, None]) / grid_safe[..., None, None]
    in_grid = ops.cast(k < grid[..., None, None], size.dtype)
    length_f = ops.cast(length, size.dtype)
    inside = ops.cast((pos >= -1.0) & (pos <= length_f), size.dtype)
    pos = ops.maximum(pos, 0.0)
    low = ops.floor(pos)
    at_edge = low >= length_f - 1.0
    low = ops.where(at_edge, length_f - 1.0, low)
    high = ops.where(at_edge, length_f - 1.0, low + 1.0)
    pos = ops.where(at_edge, low, pos)
    frac = pos - low
    scale = in_grid * inside / grid_safe[..., None, None]
    cells = ops.cast(ops.arange(length), size.dtype)  # [length]
    weights = (
        ((1.0 - frac) * scale)[..., None] * ops.cast(low[..., None] == cells, size.dtype)
        + (frac * scale)[..., None] * ops.cast(high[..., None] == cells, size.dtype)
    )  # [..., pooled, window, length]
    return ops.sum(weights, axis=-2)


def roi_align(
    features, boxes, output_size=7, spatial_scale=1.0, sampling_ratio=0, aligned=True
):
    """RoIAlign of ``boxes`` on a channels-last feature map (torchvision semantics).

    Args:
        features: tensor ``[B, H, W, C]``.
        boxes: tensor ``[B, M, 4]``, ``(x1, y1, x2, y2)`` per box of image ``b``, in the
            coordinates that ``spatial_scale`` maps to feature pixels (input pixels with
            ``spatial_scale = 1 / stride``).
        output_size: int or ``(out_h, out_w)``.
        spatial_scale: float, box coordinate -> feature pixel factor.
        sampling_ratio: int, samples per bin and axis; 0 = adaptive ``ceil(roi_size / out)``
            per box (exact for any box size, see the module docstring).
        aligned: bool, True shifts boxes by -0.5 pixel (pixel-centre model, no minimum size);
            False is the legacy behaviour (box size clamped to >= 1 feature pixel).

    Returns:
        tensor ``[B, M, out_h, out_w, C]`` in the dtype of ``features``.
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    out_h, out_w = (int(v) for v in output_size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"`output_size` must be positive. Received: output_size={output_size}")
    if int(sampling_ratio) != sampling_ratio or sampling_ratio < 0:
        raise ValueError(
            f"`sampling_ratio` must be an int >= 0. Received: sampling_ratio={sampling_ratio!r}"
        )
    dtype = features.dtype
    # Sampling positions in float32 even under mixed precision (float16 loses sub-pixel detail).
    boxes = ops.cast(boxes, "float32")
    static_h, static_w = features.shape[1], features.shape[2]
    dynamic = ops.shape(features)
    height = static_h if static_h is not None else dynamic[1]
    width = static_w if static_w is not None else dynamic[2]
    common = dict(spatial_scale=float(spatial_scale), sampling_ratio=int(sampling_ratio),
                  aligned=bool(aligned))  # fmt: skip
    weights_y = _axis_weights(boxes[..., 1], boxes[..., 3], out_h, height, static_h, **common)
    weights_x = _axis_weights(boxes[..., 0], boxes[..., 2], out_w, width, static_w, **common)
    weights_y = ops.cast(weights_y, dtype)  # [B, M, out_h, H]
    weights_x = ops.cast(weights_x, dtype)  # [B, M, out_w, W]
    rows = ops.einsum("bmph,bhwc->bmpwc", weights_y, features)
    return ops.einsum("bmpwc,bmqw->bmpqc", rows, weights_x)


@keras.saving.register_keras_serializable(package="slowfast_tf")
class RoIAlign(keras.layers.Layer):
    """Layer form of :func:`roi_align`: inputs ``[features [B,H,W,C], boxes [B,M,4]]``.

    Args:
        output_size: int or 2 ints, the pooled size (7 in PySlowFast's AVA head).
        spatial_scale: float, box coordinate -> feature pixel factor (1/16 for AVA).
        sampling_ratio: int, 0 = adaptive (PySlowFast, PyTorchVideo).
        aligned: bool, torchvision/detectron2 ``aligned`` flag.
    """

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=0, aligned=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(int(v) for v in output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def call(self, inputs):
        features, boxes = inputs
        return roi_align(
            features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def compute_output_shape(self, input_shape):
        features, boxes = input_shape
        return (features[0], boxes[1]) + self.output_size + (features[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_size": list(self.output_size),
                "spatial_scale": self.spatial_scale,
                "sampling_ratio": self.sampling_ratio,
                "aligned": self.aligned,
            }
        )
        return config
