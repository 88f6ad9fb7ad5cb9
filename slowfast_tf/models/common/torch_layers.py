"""Keras building blocks that reproduce PyTorch's Conv3d / BatchNorm3d / MaxPool3d numerics.

Why this file exists: Keras ``padding="same"`` with stride > 1 pads asymmetrically (0 before and 1
after for an even input), while torch pads ``k // 2`` on both sides. The sampling grids then differ
by one pixel and converted weights give different outputs (max |delta| ~4 on real activations).
Every layer with stride > 1 therefore gets an explicit ``ZeroPadding3D`` followed by
``padding="valid"``. Stride-1 layers with odd kernels are symmetric under ``"same"`` and use it.

Everything here uses ``keras`` only (no ``tf.*``), so models run on the TF, JAX and torch backends.
All tensors are channels-last: ``[batch, time, height, width, channels]``.
"""

import keras
from keras import ops

from slowfast_tf.models.common import time_folded_conv
from slowfast_tf.models.common.batch_norm import BatchNormalization
from slowfast_tf.models.common.time_folded_conv import TemporalConv3D, TimeFoldedConv3D

# PyTorch BatchNorm3d defaults: eps 1e-5 and momentum 0.1 (torch updates
# running = (1 - m) * running + m * batch), i.e. Keras momentum 0.9. Keras's
# default eps (1e-3) would silently change converted models.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

NORM_TYPES = ("batch_norm", "sync_batch_norm")

# Set by ``bn_folding.folding_scope()`` while a model is rebuilt for BN folding: then every conv
# gets a bias and records its output here (``id(tensor) -> conv layer``), and a BatchNorm whose
# input is such an output is left out of the graph (recorded in ``"pairs"``: conv name -> BN
# name) because its affine map is folded into that conv's kernel and bias.
_BN_FOLDING = None


def _triple(value, name):
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"`{name}` must be an int or a 3-tuple (t, h, w). Received: {name}={value}")
    return value


def conv_kernel_initializer():
    """He/MSRA normal init with fan_out, as fvcore's ``c2_msra_fill`` used by PySlowFast."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


@keras.saving.register_keras_serializable(package="slowfast_tf")
class ConcatZeroPadding3D(keras.layers.ZeroPadding3D):
    """``ZeroPadding3D`` written as concatenations with zeros instead of a ``Pad`` op.

    Used in front of plain ``Conv3D`` layers (the strided ``[kt, 1, 1]`` fusion convs). Why: with
    oneDNN on (TF's default on AVX-512 CPUs), Grappler's remapper fuses ``Pad -> Conv3D`` and
    deletes the ``Pad`` that the convolution's gradient still reads; when the frame size is unknown
    at trace time (``train.py``) the whole remapper pass then fails for the training step (it logs
    ``remapper failed ... exist for missing node .../Pad`` and the step loses every other fusion).
    Same values and config as ``ZeroPadding3D``.
    """

    def call(self, inputs):
        axes = (2, 3, 4) if self.data_format == "channels_first" else (1, 2, 3)
        x = inputs
        for axis, (before, after) in zip(axes, self.padding):
            pieces = [_zeros_along(x, axis, before)] if before else []
            pieces.append(x)
            if after:
                pieces.append(_zeros_along(x, axis, after))
            if len(pieces) > 1:
                x = ops.concatenate(pieces, axis=axis)
        return x


def _zeros_along(x, axis, count):
    """Zeros shaped like ``x`` (dynamic sizes included) except ``count`` along ``axis``."""
    shape = list(ops.shape(x))
    shape[axis] = count
    return ops.zeros(shape, dtype=x.dtype)


def conv3d(
    x,
    filters,
    kernel_size,
    strides=1,
    padding=None,
    dilation_rate=1,
    use_bias=False,
    kernel_initializer=None,
    name=None,
    time_fold=None,
):
    """A torch-equivalent ``Conv3d`` on a channels-last tensor.

    Args:
        x: keras tensor ``[B, T, H, W, C]``.
        filters: int, output channels.
        kernel_size: int or 3-tuple ``(kt, kh, kw)``.
        strides: int or 3-tuple.
        padding: int, 3-tuple of symmetric pads (torch semantics), or None for
            ``dilation * (k // 2)`` on each axis (what every SlowFast conv uses).
        dilation_rate: int or 3-tuple.
        use_bias: bool. SlowFast convs have no bias except the non-local ones.
        kernel_initializer: Keras initializer; defaults to ``conv_kernel_initializer()``.
        name: str, layer name (the conversion name maps rely on it).
        time_fold: bool, compute it as a 2-D convolution over frames folded into the batch
            (``TimeFoldedConv3D``: same weights and outputs; much faster gradients on TF CPU
            for the few-channel, large-kernel stems and for ``[1, kh, kw]`` convs). None
            (default): for every ``[1, kh, kw]`` kernel, 1x1x1 included (folding ``[kt, 1, 1]``
            kernels was slower, see ``benchmarks/bench_train.py --plain_conv3d``; stride-1
            ``[kt, 1, 1]`` kernels get ``TemporalConv3D`` instead). True with
            ``kt > 1`` (the stems) is ignored in a BN-folded inference model
            (``bn_folding.folding_scope``), where the plain ``Conv3D`` is faster.
    """
    kernel_size = _triple(kernel_size, "kernel_size")
    strides = _triple(strides, "strides")
    dilation_rate = _triple(dilation_rate, "dilation_rate")
    if padding is None:
        padding = tuple(d * (k // 2) for k, d in zip(kernel_size, dilation_rate))
    padding = _triple(padding, "padding")
    if kernel_initializer is None:
        kernel_initializer = conv_kernel_initializer()
    if time_fold is None:
        time_fold = kernel_size[0] == 1
    elif time_fold and kernel_size[0] > 1 and _BN_FOLDING is not None:
        # The BN-folded model is for inference only, and there a plain Conv3D forward pass of
        # the [kt, 7, 7] stem beats the stacked-frames Conv2D (which copies the input kt times
        # into channels): batch-1 R50 forward 5-9% faster, interleaved A/B on a 2-core CPU.
        # Folding pays off for the filter gradient, which inference never computes.
        time_fold = False

    same_is_symmetric = all(s == 1 for s in strides) and all(
        p == d * (k - 1) // 2 and (k - 1) % 2 == 0
        for k, p, d in zip(kernel_size, padding, dilation_rate)
    )
    if time_fold:
        conv_class = TimeFoldedConv3D
    elif kernel_size[1:] == (1, 1) and strides == (1, 1, 1) and dilation_rate == (1, 1, 1):
        # [kt, 1, 1] (kt > 1): a Conv3D that trains through a faster equal formulation.
        conv_class = TemporalConv3D
    else:
        conv_class = keras.layers.Conv3D
    conv = conv_class(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if same_is_symmetric else "valid",
        dilation_rate=dilation_rate,
        use_bias=use_bias or _BN_FOLDING is not None,
        kernel_initializer=kernel_initializer,
        name=name,
    )
    if not same_is_symmetric and any(p > 0 for p in padding):
        # A Conv3D op must not follow a Pad op (see ConcatZeroPadding3D); a TimeFoldedConv3D
        # that falls back to Conv3D (temporal stride or dilation) counts as one.
        # The class from its module: ``bench_train.py --plain_conv3d`` swaps this module's name.
        folded_class = time_folded_conv.TimeFoldedConv3D
        runs_as_conv2d = isinstance(conv, folded_class) and conv._foldable()
        pad_class = keras.layers.ZeroPadding3D if runs_as_conv2d else ConcatZeroPadding3D
        x = pad_class(padding=padding, name=None if name is None else f"{name}_pad")(x)
    y = conv(x)
    if _BN_FOLDING is not None:
        _BN_FOLDING["convs"][id(y)] = conv
    return y


def batch_norm(x, norm="batch_norm", zero_init=False, name=None):
    """BatchNorm with torch defaults. ``zero_init`` zeroes gamma (``ZERO_INIT_FINAL_BN``)."""
    if norm not in NORM_TYPES:
        raise ValueError(f"`norm` must be one of {NORM_TYPES}. Received: norm={norm!r}")
    if _BN_FOLDING is not None and id(x) in _BN_FOLDING["convs"]:
        _BN_FOLDING["pairs"][_BN_FOLDING["convs"][id(x)].name] = name
        return x
    return BatchNormalization(
        axis=-1,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_init else "ones",
        synchronized=norm == "sync_batch_norm",
        name=name,
    )(x)


def max_pool3d(x, pool_size, strides=None, padding=0, name=None):
    """Torch ``MaxPool3d``. Zero padding equals torch's -inf padding only for inputs >= 0
    (every SlowFast max-pool follows a ReLU)."""
    pool_size = _triple(pool_size, "pool_size")
    strides = pool_size if strides is None else _triple(strides, "strides")
    padding = _triple(padding, "padding")
    if any(p > 0 for p in padding):
        x = keras.layers.ZeroPadding3D(padding=padding, name=None if name is None else f"{name}_pad")(x)
    return keras.layers.MaxPooling3D(pool_size, strides=strides, padding="valid", name=name)(x)
