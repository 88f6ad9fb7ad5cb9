"""Building blocks of the SlowFast family: stems, bottleneck stages, laterals, non-local blocks.

Every block is a function that adds named Keras layers to a functional graph. Layer names are
PySlowFast parameter names with ``.`` replaced by ``_`` (``s3.pathway0_res0.branch2.a_bn`` ->
``s3_pathway0_res0_branch2_a_bn``), so weight conversion is a readable name map.

The few operations that are not plain Keras layers (fast-input transforms, strided temporal
sampling, time-to-channel reshapes and the non-local attention product) are small registered
layers with a full ``get_config`` so that ``.keras`` files reload without custom objects.
All tensors are channels-last ``[B, T, H, W, C]``.
"""

import keras
import numpy as np
from keras import ops

from slowfast_tf.models.common.torch_layers import batch_norm, conv3d, max_pool3d

FAST_INPUT_KINDS = (
    "rgb", "grayscale", "time_difference", "grayscale_time_difference", "optical_flow"
)  # fmt: skip
# Channels of the fast pathway's *input* per kind (optical flow is a 2-channel (dx, dy) clip).
FAST_INPUT_CHANNELS = {"optical_flow": 2}
LATERAL_TYPES = (
    "time_strided_conv", "time_strided_sample", "time_to_channel", "time_to_channel_sum", "none"
)  # fmt: skip
FAST_RESOLUTIONS = ("full", "half")
NONLOCAL_INSTANTIATIONS = ("dot_product", "softmax")


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="slowfast_tf")
class FastInputTransform(keras.layers.Layer):
    """Turns the RGB fast-pathway clip into the input kind of the paper's Table 5c ablation.

    Doing this inside the model keeps the data pipeline identical for every variant.

    Args:
        kind: str, one of ``"rgb"`` (identity), ``"grayscale"`` (mean over the 3 channels, giving
            1 channel; the clip is already mean/std normalised with the same constants on every
            channel, so the mean of normalised channels is the normalised gray value) or
            ``"time_difference"`` (``x[t+1] - x[t]`` for ``t < T-1``; the last difference is
            repeated once so the clip keeps ``T`` frames and ``T % alpha == 0`` still holds) or
            ``"grayscale_time_difference"`` (both: differences of gray frames, 1 channel; the paper
            does not say whether its "Time diff." input was RGB or gray, so both are offered) or
            ``"optical_flow"`` (identity on a 2-channel ``(dx, dy)`` flow clip that the caller
            computes, e.g. TV-L1; the model's fast input then has 2 channels).
    """

    def __init__(self, kind="rgb", **kwargs):
        super().__init__(**kwargs)
        _check_choice(kind, FAST_INPUT_KINDS, "fast_input")
        self.kind = kind

    def call(self, x):
        if self.kind.startswith("grayscale"):
            x = ops.mean(x, axis=-1, keepdims=True)
        if self.kind.endswith("time_difference"):
            diff = x[:, 1:] - x[:, :-1]
            x = ops.concatenate([diff, diff[:, -1:]], axis=1)
        return x

    def compute_output_shape(self, input_shape):
        if self.kind.startswith("grayscale"):
            return tuple(input_shape[:-1]) + (1,)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"kind": self.kind})
        return config


@keras.saving.register_keras_serializable(package="slowfast_tf")
class TemporalSubsample(keras.layers.Layer):
    """Keeps every ``stride``-th frame: ``x[:, ::stride]`` (the "time-strided sampling" lateral).

    The paper samples "one out of every alpha frames"; a plain strided slice starting at frame 0
    does exactly that on features (no linspace rounding is involved at feature level because the
    fast feature map always has ``alpha * T_slow`` frames).

    Args:
        stride: int, temporal stride (alpha).
    """

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, x):
        return x[:, :: self.stride]

    def compute_output_shape(self, input_shape):
        t = input_shape[1]
        t = None if t is None else (t + self.stride - 1) // self.stride
        return (input_shape[0], t) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update({"stride": self.stride})
        return config


@keras.saving.register_keras_serializable(package="slowfast_tf")
class TimeToChannel(keras.layers.Layer):
    """Reshapes ``{alpha*T, S^2, C}`` into ``{T, S^2, alpha*C}`` (the "time-to-channel" lateral).

    Channel index ``j * C + c`` holds channel ``c`` of fast frame ``alpha * t + j``.

    Args:
        alpha: int, number of consecutive fast frames stacked into the channel axis.
    """

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        self.alpha = int(alpha)

    def call(self, x):
        shape = ops.shape(x)
        b, t, h, w, c = shape[0], shape[1], shape[2], shape[3], shape[4]
        x = ops.reshape(x, (b, t // self.alpha, self.alpha, h, w, c))
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))
        return ops.reshape(x, (b, t // self.alpha, h, w, self.alpha * c))

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        t = None if t is None else t // self.alpha
        c = None if c is None else c * self.alpha
        return (b, t, h, w, c)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha})
        return config


@keras.saving.register_keras_serializable(package="slowfast_tf")
class NonLocalAttention(keras.layers.Layer):
    """The attention product of a non-local block: ``y = f(theta, phi) g`` (Wang et al., 2018).

    Inputs are ``[theta, phi, g]`` with shapes ``[B, T, H, W, C']`` and ``[B, T', H', W', C']``
    (phi and g come from the max-pooled input). ``A = theta phi^T`` has shape ``[B, THW, T'H'W']``.

    Args:
        instantiation: ``"dot_product"`` divides A by the number of pooled positions ``P``
            (no softmax), ``"softmax"`` scales A by ``C'^-0.5`` and takes a softmax over P.
    """

    def __init__(self, instantiation="dot_product", **kwargs):
        super().__init__(**kwargs)
        _check_choice(instantiation, NONLOCAL_INSTANTIATIONS, "nonlocal_instantiation")
        self.instantiation = instantiation

    def call(self, inputs):
        theta, phi, g = inputs
        theta_shape = ops.shape(theta)
        channels = theta_shape[-1]
        batch = theta_shape[0]
        theta_flat = ops.reshape(theta, (batch, -1, channels))
        phi_flat = ops.reshape(phi, (batch, -1, channels))
        g_flat = ops.reshape(g, (batch, -1, channels))
        attention = ops.matmul(theta_flat, ops.transpose(phi_flat, (0, 2, 1)))
        if self.instantiation == "softmax":
            attention = attention * ops.cast(channels, attention.dtype) ** -0.5
            attention = ops.softmax(attention, axis=-1)
        else:
            attention = attention / ops.cast(ops.shape(phi_flat)[1], attention.dtype)
        y = ops.matmul(attention, g_flat)
        return ops.reshape(y, theta_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def flop_count(self, input_shapes, output_shape):
        """Multiply-adds as fvcore counts PySlowFast's two einsums: ``N * C' * THW * P`` each
        (``theta phi^T`` and ``A g``); the scaling and softmax are not counted."""
        theta, phi = input_shapes[0], input_shapes[1]
        batch, channels = int(theta[0]), int(theta[-1])
        positions = int(np.prod(theta[1:-1]))
        pooled = int(np.prod(phi[1:-1]))
        return 2 * batch * channels * positions * pooled

    def get_config(self):
        config = super().get_config()
        config.update({"instantiation": self.instantiation})
        return config


def basic_stem(x, filters, temporal_kernel, norm, name):
    """``ResNetBasicStem``: conv ``[kt,7,7]`` stride ``[1,2,2]`` -> BN -> ReLU -> max-pool
    ``[1,3,3]`` stride ``[1,2,2]`` pad ``[0,1,1]``. Spatial /4, no temporal stride.

    The conv is time-folded (``TimeFoldedConv3D``): a 3-channel input with a 7x7 kernel is where
    TF's Conv3D gradient kernels are slowest; the math and weights are unchanged."""
    x = conv3d(
        x, filters, (temporal_kernel, 7, 7), strides=(1, 2, 2), name=f"{name}_conv", time_fold=True
    )
    x = batch_norm(x, norm=norm, name=f"{name}_bn")
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return max_pool3d(x, (1, 3, 3), strides=(1, 2, 2), padding=(0, 1, 1), name=f"{name}_pool")


def bottleneck_block(
    x, filters_out, filters_inner, temporal_kernel, stride, dilation, norm, name
):
    """``ResBlock`` with a ``BottleneckTransform``: ``a`` = ``[kt,1,1]``, ``b`` = ``[1,3,3]``
    (carries the spatial stride and dilation), ``c`` = ``[1,1,1]``; no ReLU after ``c_bn``,
    whose gamma is zero-initialised so every block starts as the identity."""
    filters_in = x.shape[-1]
    if filters_in != filters_out or stride != 1:
        shortcut = conv3d(x, filters_out, 1, strides=(1, stride, stride), name=f"{name}_branch1")
        shortcut = batch_norm(shortcut, norm=norm, name=f"{name}_branch1_bn")
    else:
        shortcut = x
    prefix = f"{name}_branch2"
    y = conv3d(x, filters_inner, (temporal_kernel, 1, 1), name=f"{prefix}_a")
    y = batch_norm(y, norm=norm, name=f"{prefix}_a_bn")
    y = keras.layers.ReLU(name=f"{prefix}_a_relu")(y)
    y = conv3d(
        y,
        filters_inner,
        (1, 3, 3),
        strides=(1, stride, stride),
        dilation_rate=(1, dilation, dilation),
        name=f"{prefix}_b",
    )
    y = batch_norm(y, norm=norm, name=f"{prefix}_b_bn")
    y = keras.layers.ReLU(name=f"{prefix}_b_relu")(y)
    y = conv3d(y, filters_out, 1, name=f"{prefix}_c")
    y = batch_norm(y, norm=norm, zero_init=True, name=f"{prefix}_c_bn")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def nonlocal_block(x, instantiation, pool_size, norm, name):
    """PySlowFast ``Nonlocal``: 1x1x1 theta/phi/g (with bias) to C/2 channels, phi and g on the
    max-pooled input, attention product, 1x1x1 ``conv_out`` back to C, zero-gamma BN, residual."""
    channels = x.shape[-1]
    inner = channels // 2
    theta = conv3d(x, inner, 1, use_bias=True, name=f"{name}_conv_theta")
    pooled = x
    if any(p > 1 for p in pool_size):
        # The block input is post-ReLU (>= 0) and the pool has no padding: matches torch exactly.
        pooled = max_pool3d(x, pool_size, strides=pool_size, name=f"{name}_pool")
    phi = conv3d(pooled, inner, 1, use_bias=True, name=f"{name}_conv_phi")
    g = conv3d(pooled, inner, 1, use_bias=True, name=f"{name}_conv_g")
    y = NonLocalAttention(instantiation, name=f"{name}_attention")([theta, phi, g])
    y = conv3d(y, channels, 1, use_bias=True, name=f"{name}_conv_out")
    y = batch_norm(y, norm=norm, zero_init=True, name=f"{name}_bn")
    return keras.layers.Add(name=f"{name}_add")([x, y])


def res_stage(
    x,
    num_blocks,
    filters_out,
    filters_inner,
    temporal_kernels,
    stride,
    dilation,
    norm,
    name,
    nonlocal_indices=(),
    nonlocal_instantiation="dot_product",
    nonlocal_pool=(1, 2, 2),
):
    """One ``ResStage`` pathway: ``num_blocks`` bottlenecks (stride on block 0), each followed by
    a non-local block when its index is in ``nonlocal_indices``."""
    for i in range(num_blocks):
        x = bottleneck_block(
            x,
            filters_out,
            filters_inner,
            temporal_kernels[i],
            stride if i == 0 else 1,
            dilation,
            norm,
            name=f"{name}_res{i}",
        )
        if i in nonlocal_indices:
            x = nonlocal_block(
                x, nonlocal_instantiation, nonlocal_pool, norm, name=f"{name}_nonlocal{i}"
            )
    return x


def fuse_fast_to_slow(
    slow, fast, lateral_type, alpha, fusion_kernel_size, fusion_channel_ratio, norm, name,
    fast_resolution="full",
):
    """The lateral connection ``s{k}_fuse`` (paper section 3.4 / Table 5a).

    - ``time_strided_conv`` (default): conv ``[K,1,1]`` stride ``[alpha,1,1]`` to
      ``ratio * C_f`` channels -> BN -> ReLU, concatenated after the slow channels.
    - ``time_strided_sample``: every alpha-th fast frame, concatenated (``C_f`` channels).
    - ``time_to_channel``: alpha consecutive frames stacked into ``alpha * C_f`` channels.
    - ``time_to_channel_sum``: time-to-channel **added** to the slow features (slow width
      unchanged). When ``alpha * C_f == C_s`` (``alpha * beta = 1``, e.g. 4x16 R50: alpha 8,
      beta 1/8) it is a plain reshape-and-add with no weights, so it costs exactly what no
      lateral costs (paper Table 5a: 34.2 GF). Otherwise a 1x1x1 projection conv to ``C_s``
      -> BN -> ReLU (``{name}_conv_f2s`` / ``_bn``) makes the channels match first.
    - ``none``: no lateral (the paper's "SlowFast" row without fusion); returns ``slow``.

    With ``fast_resolution="half"`` the fast features are half the slow ones' height and width;
    the lateral output is upsampled x2 (nearest) after its conv, so the conv runs at the fast
    pathway's resolution.
    """
    _check_choice(lateral_type, LATERAL_TYPES, "lateral_type")
    _check_choice(fast_resolution, FAST_RESOLUTIONS, "fast_resolution")
    if lateral_type == "none":
        return slow
    project = lateral_type == "time_to_channel_sum" and fast.shape[-1] * alpha != slow.shape[-1]
    if lateral_type == "time_strided_conv":
        fuse = conv3d(
            fast,
            fast.shape[-1] * fusion_channel_ratio,
            (fusion_kernel_size, 1, 1),
            strides=(alpha, 1, 1),
            name=f"{name}_conv_f2s",
        )
    elif lateral_type == "time_strided_sample":
        fuse = TemporalSubsample(alpha, name=f"{name}_sample")(fast)
    else:
        fuse = TimeToChannel(alpha, name=f"{name}_time_to_channel")(fast)
        if project:
            fuse = conv3d(fuse, slow.shape[-1], 1, name=f"{name}_conv_f2s")
    if lateral_type == "time_strided_conv" or project:
        fuse = batch_norm(fuse, norm=norm, name=f"{name}_bn")
        fuse = keras.layers.ReLU(name=f"{name}_relu")(fuse)
    if fast_resolution == "half":
        fuse = keras.layers.UpSampling3D((1, 2, 2), name=f"{name}_upsample")(fuse)
    if lateral_type == "time_to_channel_sum":
        return keras.layers.Add(name=f"{name}_add")([slow, fuse])
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([slow, fuse])
