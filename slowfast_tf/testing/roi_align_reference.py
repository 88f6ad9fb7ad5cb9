"""A literal NumPy RoIAlign, written from the published definition, for tests only.

It follows torchvision's ``roi_align`` forward (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``,
which detectron2's ``ROIAlign`` calls) operation by operation, in float32 scalars and with the
data-dependent loops of the original (one box, one bin, one sample at a time). It is slow and
meant only to check the vectorised ``keras.ops`` and torch implementations.
"""

import math

import numpy as np

_F = np.float32


def _bilinear(maps, y, x):
    """torchvision ``bilinear_interpolate`` at one point of ``[C, H, W]`` maps (all channels
    at once; y and x are float32 scalars). Returns ``[C]``."""
    height, width = maps.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(maps.shape[0], _F)
    if y <= 0:
        y = _F(0.0)
    if x <= 0:
        x = _F(0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = _F(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = _F(x_low)
    else:
        x_high = x_low + 1
    ly, lx = _F(y - _F(y_low)), _F(x - _F(x_low))
    hy, hx = _F(_F(1.0) - ly), _F(_F(1.0) - lx)
    return (
        hy * hx * maps[:, y_low, x_low]
        + hy * lx * maps[:, y_low, x_high]
        + ly * hx * maps[:, y_high, x_low]
        + ly * lx * maps[:, y_high, x_high]
    ).astype(_F)


def roi_align_reference(
    features, rois, output_size=7, spatial_scale=1.0, sampling_ratio=0, aligned=True
):
    """RoIAlign of ``rois`` on ``features``.

    Args:
        features: ``[N, C, H, W]`` float array (torch layout, as the definition).
        rois: ``[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)``.
        output_size: int or ``(out_h, out_w)``.
        spatial_scale, sampling_ratio, aligned: as torchvision.

    Returns:
        ``[K, C, out_h, out_w]`` float32.
    """
    features = np.asarray(features, dtype=_F)
    rois = np.asarray(rois, dtype=_F)
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    scale = _F(spatial_scale)
    offset = _F(0.5) if aligned else _F(0.0)
    out = np.zeros((len(rois), features.shape[1], out_h, out_w), dtype=_F)
    for r, (index, x1, y1, x2, y2) in enumerate(rois):
        image = features[int(index)]
        start_w, start_h = _F(x1 * scale - offset), _F(y1 * scale - offset)
        end_w, end_h = _F(x2 * scale - offset), _F(y2 * scale - offset)
        roi_w, roi_h = _F(end_w - start_w), _F(end_h - start_h)
        if not aligned:
            roi_w, roi_h = max(roi_w, _F(1.0)), max(roi_h, _F(1.0))
        bin_h, bin_w = _F(roi_h / _F(out_h)), _F(roi_w / _F(out_w))
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / _F(out_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / _F(out_w))
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                total = np.zeros(image.shape[0], _F)
                for iy in range(grid_h):
                    y = _F(_F(start_h + _F(ph) * bin_h) + _F(_F(iy + 0.5) * bin_h) / _F(grid_h))
                    for ix in range(grid_w):
                        x = _F(
                            _F(start_w + _F(pw) * bin_w) + _F(_F(ix + 0.5) * bin_w) / _F(grid_w)
                        )
                        total = (total + _bilinear(image, y, x)).astype(_F)
                out[r, :, ph, pw] = total / _F(count)
    return out
