"""Faster equal formulations of ``Conv3D``: stems and 1xkxk convs as one ``Conv2D`` over frames
folded into the batch (``TimeFoldedConv3D``), ``[kt, 1, 1]`` convs by width (``TemporalConv3D``).

Why: TensorFlow's CPU kernels for a Conv3D with few input channels and a large ``[kt, 7, 7]``
kernel are very slow, above all the filter gradient (``Conv3DBackpropFilter``): in the tiny
synthetic SlowFast it was ~1.1 of ~1.3 CPU-s per training step. The same convolution written as

    y[b, t] = Conv2D(concat_k x[b, t + k], W reshaped to [kh, kw, kt * C, F])

(the ``kt`` time-shifted frames stacked along channels, time folded into the batch) has exactly
the same math and uses the well-tuned 2-D kernels (``benchmarks/bench_train.py --plain_conv3d``
times both). ``conv3d`` uses it for the stems (not in BN-folded inference models, where the plain
``Conv3D`` forward pass is faster) and, by default, for every ``[1, kh, kw]`` kernel,
1x1x1 included (pure reshapes around a Conv2D; 1.2-20x faster gradients and equal or faster
forward passes in layer A/B runs). Folding ``[kt, 1, 1]`` kernels this way was slower; those
are ``TemporalConv3D`` layers (below), which train through a faster equal formulation chosen by
their input width.

Both layers keep ``Conv3D``'s variables (``kernel`` ``[kt, kh, kw, C, F]``, optional ``bias``),
their names and their configs, so converters, weight files and FLOP counts are unchanged. They use
``keras.ops`` only and run on every backend. Cases they do not cover (temporal stride or
dilation, groups, channels-first) fall back to the plain ``Conv3D``.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="slowfast_tf")
class TimeFoldedConv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` with the same weights and outputs, computed as a 2-D convolution
    over ``[B * T_out, H, W, kt * C]`` (see the module docstring). Takes ``Conv3D``'s arguments."""

    def _foldable(self):
        return (
            self.data_format == "channels_last"
            and self.strides[0] == 1
            and self.dilation_rate[0] == 1
            and self.groups == 1
        )

    def call(self, inputs):
        if not self._foldable():
            return super().call(inputs)
        # The bias is added to the 4-D Conv2D output, before the reshape back to 5-D, so that
        # Grappler fuses Conv2D + BiasAdd into one oneDNN kernel (the BN-folded serving model
        # has a bias on every conv; added after the reshape it was a separate op, ~8% of the
        # op time of a batch-1 R50 forward pass in a TF profile on a 2-core CPU).
        outputs = self._folded_conv(inputs, self.kernel, self.bias if self.use_bias else None)
        return outputs if self.activation is None else self.activation(outputs)

    def _folded_conv(self, inputs, kernel, bias):
        kt, kh, kw = self.kernel_size
        channels = kernel.shape[3]
        if self.padding == "same" and kt > 1:
            # Stride 1 in time: "same" pads (kt - 1) // 2 frames before and the rest after.
            before = (kt - 1) // 2
            inputs = ops.pad(inputs, [[0, 0], [before, kt - 1 - before], [0, 0], [0, 0], [0, 0]])
        dynamic = ops.shape(inputs)
        t_in = inputs.shape[1] if inputs.shape[1] is not None else dynamic[1]
        h, w = dynamic[2], dynamic[3]
        t_out = t_in - kt + 1
        if kt == 1:
            # No slice: a full-range slice is still an op, and its gradient (a zero-filled
            # StridedSliceGrad of the whole activation) cost ~5% of an R50 training step.
            stacked = inputs
        else:
            stacked = ops.concatenate([inputs[:, k : k + t_out] for k in range(kt)], axis=-1)
        stacked = ops.reshape(stacked, (-1, h, w, kt * channels))
        # [kt, kh, kw, C, F] -> [kh, kw, kt, C, F] -> [kh, kw, kt * C, F]: channel k * C + c of
        # the stacked frames meets kernel tap (k, c), as in the concatenation above.
        kernel_2d = ops.reshape(
            ops.transpose(kernel, (1, 2, 0, 3, 4)), (kh, kw, kt * channels, self.filters)
        )
        strides = list(self.strides[1:])
        if kh == kw == 1 and strides != [1, 1]:
            # A strided 1x1 conv is a subsample and a stride-1 1x1 conv (no padding either way).
            # Done so because TF 2.21's oneDNN Conv2DBackpropFilter for strided 1x1 kernels with
            # few channels (e.g. [64, 56, 56, 4] -> 8, stride 2) corrupts the heap and aborts
            # the process on AVX-512 CPUs, where oneDNN is on by default.
            stacked = _subsample(stacked, *strides)
            strides = [1, 1]
        outputs = ops.conv(
            stacked,
            kernel_2d,
            strides=strides,
            padding=self.padding,
            dilation_rate=list(self.dilation_rate[1:]),
            data_format="channels_last",
        )
        if bias is not None:
            outputs = ops.add(outputs, bias)
        out_shape = ops.shape(outputs)
        return ops.reshape(outputs, (-1, t_out, out_shape[1], out_shape[2], self.filters))


def _subsample(x, stride_h, stride_w):
    """``x[:, ::stride_h, ::stride_w]`` of a channels-last ``[N, H, W, C]`` tensor, without strides.

    ``H`` and ``W`` are zero-padded up to multiples of the strides (the padding is never picked),
    the tensor is viewed as ``[N, H / sh, sh, W / sw, sw * C]`` and the first row and the first
    ``C`` channels of each block are kept. TF's ``StridedSlice`` with strides > 1 was 2-5x slower
    forward, and its gradient slower too, on SlowFast R50's shortcut activations (2-core CPU).
    """
    dynamic = ops.shape(x)
    h, w, channels = dynamic[1], dynamic[2], x.shape[-1]
    pad_h, pad_w = (-h) % stride_h, (-w) % stride_w
    if not (isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == pad_w == 0):
        x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    out_h, out_w = (h + pad_h) // stride_h, (w + pad_w) // stride_w
    x = ops.reshape(x, (-1, out_h, stride_h, out_w, stride_w * channels))
    return x[:, :, 0, :, :channels]


@keras.saving.register_keras_serializable(package="slowfast_tf", name="TemporalConv3D")
class TemporalConv3D(keras.layers.Conv3D):
    """A ``[kt, 1, 1]`` stride-1 ``Conv3D`` (SlowFast's ``branch2_a``) with the same weights and
    outputs, whose training pass uses the formulation that is fastest for its input width.

    A ``[kt, 1, 1]`` kernel mixes frames only, so the same convolution can be written three ways:

    - ``C <= 64`` (the fast pathway): a ``Conv2D`` with a ``[kt, 1]`` kernel over the free view
      ``[B, T, H * W, C]``;
    - ``C >= 1280`` (the slow pathway's ``res5``: few positions, wide channels): one matmul of
      ``[B * T * H * W, C]`` by the kernel laid out as ``[C, kt * F]``, then the sum of the ``kt``
      slices of ``F`` channels, each shifted in time by its tap;
    - otherwise the ``Conv3D`` op.

    Measured on a 2-core CPU (oneDNN, TF 2.21) at SlowFast R50's shapes, forward plus both
    gradients (batch 2, 112^2 and 224^2): the fast pathway's convs with C <= 64 1.0-2.4x faster
    as ``Conv2D`` (one shape, C = 64 at 14^2, 0.87x), ``res5``'s 1.1-2.1x faster as a matmul, and
    ``Conv3D`` the fastest or within ~10% of it at the widths in between. Inference
    (``training`` false) always uses the ``Conv3D`` op, which was the fastest forward pass at
    every shape. Temporal dilation, groups and channels-first fall back to ``Conv3D``.
    """

    conv2d_max_channels = 64
    matmul_min_channels = 1280

    def _route(self, channels):
        if not (
            self.data_format == "channels_last"
            and self.kernel_size[1:] == (1, 1)
            and self.strides == (1, 1, 1)
            and self.dilation_rate == (1, 1, 1)
            and self.groups == 1
        ):
            return "conv3d"
        if channels <= self.conv2d_max_channels:
            return "conv2d"
        if channels >= self.matmul_min_channels:
            return "matmul"
        return "conv3d"

    def call(self, inputs, training=None):
        route = self._route(self.kernel.shape[3]) if training else "conv3d"
        if route == "conv3d":
            return super().call(inputs)
        if route == "conv2d":
            outputs = self._conv2d(inputs)
        else:
            outputs = self._shifted_matmul(inputs)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        return outputs if self.activation is None else self.activation(outputs)

    def _sizes(self, inputs):
        """``kt, C, F`` and the input's ``T, H, W`` (static ``T`` where known, else run-time)."""
        dynamic = ops.shape(inputs)
        t_in = inputs.shape[1] if inputs.shape[1] is not None else dynamic[1]
        return self.kernel_size[0], self.kernel.shape[3], self.filters, t_in, dynamic[2], dynamic[3]

    def _conv2d(self, inputs):
        kt, channels, filters, t_in, h, w = self._sizes(inputs)
        outputs = ops.conv(
            ops.reshape(inputs, (-1, t_in, h * w, channels)),
            ops.reshape(self.kernel, (kt, 1, channels, filters)),
            strides=1,
            padding=self.padding,
            data_format="channels_last",
        )
        return ops.reshape(outputs, (-1, ops.shape(outputs)[1], h, w, filters))

    def _shifted_matmul(self, inputs):
        kt, channels, filters, t_in, h, w = self._sizes(inputs)
        # [kt, 1, 1, C, F] -> [C, kt, F] -> [C, kt * F]: channel k * F + f of z is tap k, filter f.
        kernel = ops.reshape(
            ops.transpose(ops.reshape(self.kernel, (kt, channels, filters)), (1, 0, 2)),
            (channels, kt * filters),
        )
        z = ops.matmul(ops.reshape(inputs, (-1, channels)), kernel)
        z = ops.reshape(z, (-1, t_in, h, w, kt * filters))
        if self.padding == "same":
            before = (kt - 1) // 2
            z = ops.pad(z, [[0, 0], [before, kt - 1 - before], [0, 0], [0, 0], [0, 0]])
            t_out = t_in
        else:
            t_out = t_in - kt + 1
        # y[t] = sum_k x[t + k] W[k] = sum_k z[t + k, tap k] (z padded as the input would be).
        terms = [z[:, k : k + t_out, :, :, k * filters : (k + 1) * filters] for k in range(kt)]
        outputs = terms[0]
        for term in terms[1:]:
            outputs = ops.add(outputs, term)
        return outputs


# Keras weight files (``.weights.h5``, ``.keras``, checkpoints) address each layer by its class
# name in snake case plus a counter (``conv3d_7``), not by ``layer.name``. These layers were plain
# ``Conv3D`` layers before ``TemporalConv3D`` existed; answering to that class name keeps every
# file saved before (converted weights, checkpoints, exported models) loadable, value for value.
# Serialization uses the registered name ``slowfast_tf>TemporalConv3D`` and is unaffected.
TemporalConv3D.__name__ = "Conv3D"
