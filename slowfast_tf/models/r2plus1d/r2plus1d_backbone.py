"""The R(2+1)D paper family: R2D, f-R2D, R3D, MCx, rMCx and R(2+1)D residual networks.

Tran, Wang, Torresani, Ray, LeCun, Paluri, "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018 (https://arxiv.org/abs/1711.11248).

Every variant is the same ResNet-18/34 skeleton with basic (two 3x3) residual blocks; only the kind
of convolution used in each layer group changes. The per-group convention follows the paper's
Figure 2 and the authors' released code (facebookresearch/VMZ, ``create_mcx`` / ``create_rmcx``):

```
 group:      conv1 (stem)     conv2_x    conv3_x    conv4_x    conv5_x     final T
 R2D         Lx7x7 (T -> 1)   2D         2D         2D         2D          1
 f-R2D       1x7x7            2D         2D         2D         2D          L
 R3D         3x7x7            3D         3D         3D         3D          L/8
 MC2         3x7x7            2D         2D         2D         2D          L
 MC3         3x7x7            3D         2D         2D         2D          L
 MC4         3x7x7            3D         3D         2D         2D          L/2
 MC5         3x7x7            3D         3D         3D         2D          L/4
 rMC2        1x7x7            3D         3D         3D         3D          L/8
 rMC3        1x7x7            2D         3D         3D         3D          L/8
 rMC4        1x7x7            2D         2D         3D         3D          L/4
 rMC5        1x7x7            2D         2D         2D         3D          L/2
 R(2+1)D     (1x7x7, 3x1x1)   (2+1)D     (2+1)D     (2+1)D     (2+1)D      L/8
```

So MCx uses 3D convolutions in conv1 .. conv_{x-1} and 2D convolutions from conv_x upward, and
rMCx is the reverse (2D below conv_x, 3D from conv_x upward). "2D" means a ``1 x d x d`` kernel
applied to every frame; R2D instead folds the L frames into the channels of its first layer
(a ``L x 7 x 7`` kernel without temporal padding), so everything after the stem sees T = 1.

Strides (paper Table 1): the stem has stride ``1x2x2`` and there is no max-pool, so a 112x112
clip gives 56x56 after conv1 and 7x7 after conv5_x. The first block of conv3_x, conv4_x and
conv5_x downsamples by 2 in space and, only when that block is 3D or (2+1)D, also by 2 in time.
The projection shortcut (1x1x1 conv + BN) uses the same stride.

(2+1)D factorisation: each ``t x d x d`` conv from ``N_{i-1}`` to ``N_i`` channels becomes a
``1 x d x d`` spatial conv to ``M_i`` channels, BN, ReLU, then a ``t x 1 x 1`` temporal conv to
``N_i`` channels, with ``M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i))`` so the
parameter count matches the 3D conv (paper Eq. 1). Two documented deviations from that formula:

- The stem uses ``M = 45`` (VMZ and torchvision both do; Eq. 1 would give 83).
- ``mid_channels="torchvision"`` reproduces torchvision's ``r2plus1d_18``, which computes one
  ``M`` per block from (block input, block output) channels and reuses it for the block's second
  conv. That only changes the first block of conv3_x .. conv5_x (e.g. 230 instead of 288 mid
  channels in conv3_1's second conv) and gives 31.5M instead of 33.3M parameters for R18.

Numerics follow the rest of this project (torch padding, BN eps 1e-5 / momentum 0.9, MSRA fan-out
init). The authors' Caffe2 models used BN eps 1e-3; converted weights only need that epsilon if
bit-exactness with VMZ matters.
"""

import keras

from slowfast_tf.models.common.torch_layers import NORM_TYPES, batch_norm, conv3d

VARIANTS = (
    "r2d",
    "fr2d",
    "r3d",
    "mc2",
    "mc3",
    "mc4",
    "mc5",
    "rmc2",
    "rmc3",
    "rmc4",
    "rmc5",
    "r2plus1d",
)

# Blocks per group conv2_x .. conv5_x (VMZ ``BLOCK_CONFIG``; 18 and 34 are the paper's Table 1).
STAGE_DEPTHS = {
    10: (1, 1, 1, 1),
    16: (2, 2, 2, 1),
    18: (2, 2, 2, 2),
    26: (2, 3, 4, 3),
    34: (3, 4, 6, 3),
}

MID_CHANNEL_RULES = ("paper", "torchvision")

# Stem mid channels of the factorised 3x7x7 conv in VMZ's and torchvision's R(2+1)D.
STEM_MID_CHANNELS = 45

_STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8)


def variant_conv_types(variant):
    """Convolution kind of each layer group for a named variant.

    Args:
        variant: str, one of ``VARIANTS``.

    Returns:
        tuple of 5 str for (conv1, conv2_x, conv3_x, conv4_x, conv5_x). The stem is one of
        ``"collapse"`` (R2D's ``L x 7 x 7``), ``"2d"``, ``"3d"`` or ``"2plus1d"``; the stages are
        ``"2d"``, ``"3d"`` or ``"2plus1d"``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
    if variant == "r2d":
        return ("collapse", "2d", "2d", "2d", "2d")
    if variant == "fr2d":
        return ("2d",) * 5
    if variant == "r3d":
        return ("3d",) * 5
    if variant == "r2plus1d":
        return ("2plus1d",) * 5
    level = int(variant[-1])  # x in MCx / rMCx: the first group that switches kind.
    if variant.startswith("mc"):
        return tuple("3d" if group < level else "2d" for group in range(1, 6))
    return tuple("2d" if group < level else "3d" for group in range(1, 6))


def num_temporal_strides(variant):
    """How many times a variant halves T (downsampling blocks of conv3_x .. conv5_x that are 3D
    or (2+1)D). R2D collapses T in its stem instead and returns 0."""
    conv_types = variant_conv_types(variant)
    return sum(kind != "2d" for kind in conv_types[2:])


def output_frames(variant, num_frames):
    """T of the ``slow_res5`` endpoint for a clip of ``num_frames`` frames (1 for R2D)."""
    if variant_conv_types(variant)[0] == "collapse":
        return 1
    return num_frames // 2 ** num_temporal_strides(variant)


def _validate_inputs(inputs, num_frames):
    if not isinstance(inputs, dict) or set(inputs) != {"slow"}:
        keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(
            'Inputs must be a dict {"slow": clip} with clip [batch, frames, height, width, 3] '
            f"(the single-pathway key of slowfast_tf). Received: {keys}"
        )
    shape = tuple(inputs["slow"].shape)
    if len(shape) != 5 or (shape[1] is not None and shape[1] != num_frames):
        raise ValueError(
            f"Input 'slow' must be [batch, {num_frames}, height, width, 3] (the model was built "
            f"for num_frames={num_frames}). Received: shape={shape}"
        )


def factorized_mid_channels(in_channels, out_channels, kernel_t, kernel_s):
    """Paper Eq. 1: mid channels that give a (2+1)D conv the parameters of the 3D conv.

    Args:
        in_channels: int, ``N_{i-1}``.
        out_channels: int, ``N_i``.
        kernel_t: int, temporal kernel ``t``.
        kernel_s: int, spatial kernel ``d``.

    Returns:
        int, ``floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i))``.
    """
    area = kernel_s * kernel_s
    return (kernel_t * area * in_channels * out_channels) // (
        area * in_channels + kernel_t * out_channels
    )


def _conv(x, kind, filters, spatial_kernel, strides, mid_channels, norm, name):
    """One ``3 x d x d`` conv slot of the network, realised as 2D, 3D or (2+1)D.

    ``strides`` is ``(st, ss)``; 2D convs ignore ``st`` (no temporal downsampling without a
    temporal kernel, as in VMZ). The caller adds the BN + ReLU that follow the slot; a (2+1)D slot
    has its own inner BN + ReLU between the spatial and temporal convs (paper Sec. 3.5).
    """
    stride_t, stride_s = strides
    if kind == "3d":
        return conv3d(x, filters, (3, spatial_kernel, spatial_kernel),
                      strides=(stride_t, stride_s, stride_s), name=name)
    if kind == "2d":
        return conv3d(x, filters, (1, spatial_kernel, spatial_kernel),
                      strides=(1, stride_s, stride_s), name=name)
    # "2plus1d": spatial 1 x d x d -> BN -> ReLU -> temporal t x 1 x 1.
    x = conv3d(x, mid_channels, (1, spatial_kernel, spatial_kernel),
               strides=(1, stride_s, stride_s), name=f"{name}_spatial")
    x = batch_norm(x, norm=norm, name=f"{name}_spatial_bn")
    x = keras.layers.ReLU(name=f"{name}_spatial_relu")(x)
    return conv3d(x, filters, (3, 1, 1), strides=(stride_t, 1, 1), name=f"{name}_temporal")


def _basic_block(x, kind, in_channels, filters, stride, mid_channels, norm, zero_init_final_bn,
                 name):
    """ResNet basic block: two 3x3 conv slots, projection shortcut when shape changes."""
    stride_t = stride if kind != "2d" else 1
    mid_a, mid_b = mid_channels
    shortcut = x
    y = _conv(x, kind, filters, 3, (stride_t, stride), mid_a, norm, f"{name}_branch2_a")
    y = batch_norm(y, norm=norm, name=f"{name}_branch2_a_bn")
    y = keras.layers.ReLU(name=f"{name}_branch2_a_relu")(y)
    y = _conv(y, kind, filters, 3, (1, 1), mid_b, norm, f"{name}_branch2_b")
    y = batch_norm(y, norm=norm, zero_init=zero_init_final_bn, name=f"{name}_branch2_b_bn")
    if in_channels != filters or stride != 1:
        shortcut = conv3d(x, filters, 1, strides=(stride_t, stride, stride),
                          name=f"{name}_branch1")
        shortcut = batch_norm(shortcut, norm=norm, name=f"{name}_branch1_bn")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _block_mid_channels(rule, in_channels, filters):
    """(M for conv a, M for conv b) of one (2+1)D block under ``rule``."""
    mid_a = factorized_mid_channels(in_channels, filters, 3, 3)
    if rule == "torchvision":
        return mid_a, mid_a
    return mid_a, factorized_mid_channels(filters, filters, 3, 3)


@keras.saving.register_keras_serializable(package="slowfast_tf")
class R2Plus1DBackbone(keras.Model):
    """R2D / f-R2D / R3D / MCx / rMCx / R(2+1)D ResNet backbone (Tran et al., CVPR 2018).

    A functional ``keras.Model`` taking ``{"slow": [B, T, H, W, 3]}`` (the single-pathway key
    used across slowfast_tf) and returning a dict of endpoints ``"slow_stem"`` (after conv1) and
    ``"slow_res2"`` .. ``"slow_res5"`` (after conv2_x .. conv5_x). For a 16x112x112 R(2+1)D clip
    they are 16x56x56x64, 16x56x56x64, 8x28x28x128, 4x14x14x256 and 2x7x7x512. See the module
    docstring for the per-variant layout.

    Layer names follow the project's PySlowFast-style scheme: ``s1_pathway0_stem_conv`` /
    ``_bn``, ``s{2..5}_pathway0_res{i}_branch2_a`` / ``_a_bn`` / ``_b`` / ``_b_bn``, shortcut
    ``_branch1`` / ``_branch1_bn``. A (2+1)D slot ``X`` is ``X_spatial``, ``X_spatial_bn``,
    ``X_temporal`` (torchvision ``convK.0.0``, ``convK.0.1``, ``convK.0.3``; ``X_bn`` is
    ``convK.1``).

    Args:
        variant: str, one of ``"r2d"``, ``"fr2d"``, ``"r3d"``, ``"mc2"`` .. ``"mc5"``,
            ``"rmc2"`` .. ``"rmc5"``, ``"r2plus1d"``.
        depth: int, ResNet depth, one of 10, 16, 18, 26, 34 (the paper uses 18 and 34).
        num_frames: int, clip length L. R2D's stem kernel spans all L frames, so the model is
            built for this exact L; for the other variants it must be divisible by
            ``2 ** num_temporal_strides(variant)`` (8 for R3D / R(2+1)D).
        base_filters: int, channels of conv1 and conv2_x (64 in the paper); conv3_x .. conv5_x
            use 2x, 4x, 8x. Small values give tiny test models.
        mid_channels: str, ``"paper"`` (Eq. 1 per conv) or ``"torchvision"`` (one M per block,
            as ``torchvision.models.video.r2plus1d_18``). Only used by ``"r2plus1d"``.
        stem_mid_channels: int, mid channels of the factorised stem (45 in VMZ / torchvision).
            Only used by ``"r2plus1d"``.
        image_size: int or None, static H = W of the input; None accepts any size.
        norm: str, ``"batch_norm"`` or ``"sync_batch_norm"``.
        zero_init_final_bn: bool, zero-init the gamma of each block's last BN (``b_bn``), the
            project-wide ``ZERO_INIT_FINAL_BN`` convention. The paper's code does not do it.
        **kwargs: passed to ``keras.Model`` (e.g. ``name``, ``dtype``).
    """

    def __init__(
        self,
        variant="r2plus1d",
        depth=18,
        num_frames=16,
        base_filters=64,
        mid_channels="paper",
        stem_mid_channels=STEM_MID_CHANNELS,
        image_size=None,
        norm="batch_norm",
        zero_init_final_bn=True,
        **kwargs,
    ):
        conv_types = variant_conv_types(variant)
        if depth not in STAGE_DEPTHS:
            raise ValueError(
                f"`depth` must be one of {tuple(STAGE_DEPTHS)}. Received: depth={depth!r}"
            )
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive int. Received: num_frames={num_frames!r}")
        temporal_factor = 2 ** num_temporal_strides(variant)
        if num_frames % temporal_factor:
            raise ValueError(
                f"`num_frames` must be a multiple of {temporal_factor} for variant={variant!r}, "
                f"which halves T {num_temporal_strides(variant)} times. "
                f"Received: num_frames={num_frames}"
            )
        if not isinstance(base_filters, int) or base_filters < 1:
            raise ValueError(
                f"`base_filters` must be a positive int. Received: base_filters={base_filters!r}"
            )
        if mid_channels not in MID_CHANNEL_RULES:
            raise ValueError(
                f"`mid_channels` must be one of {MID_CHANNEL_RULES}. "
                f"Received: mid_channels={mid_channels!r}"
            )
        if not isinstance(stem_mid_channels, int) or stem_mid_channels < 1:
            raise ValueError(
                "`stem_mid_channels` must be a positive int. "
                f"Received: stem_mid_channels={stem_mid_channels!r}"
            )
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(
                f"`image_size` must be None or a positive int. Received: image_size={image_size!r}"
            )
        if norm not in NORM_TYPES:
            raise ValueError(f"`norm` must be one of {NORM_TYPES}. Received: norm={norm!r}")

        # === Functional Model ===
        clip = keras.Input(shape=(num_frames, image_size, image_size, 3), name="slow")
        stem_kind = conv_types[0]
        name = "s1_pathway0_stem_conv"
        if stem_kind == "collapse":
            # R2D: the L frames act as input channels of a 2D conv, i.e. an L x 7 x 7 kernel
            # with no temporal padding, so T becomes 1 (paper Sec. 3.1).
            x = conv3d(clip, base_filters, (num_frames, 7, 7), strides=(1, 2, 2),
                       padding=(0, 3, 3), name=name)
        elif stem_kind == "2plus1d":
            x = conv3d(clip, stem_mid_channels, (1, 7, 7), strides=(1, 2, 2), name=f"{name}_spatial")
            x = batch_norm(x, norm=norm, name=f"{name}_spatial_bn")
            x = keras.layers.ReLU(name=f"{name}_spatial_relu")(x)
            x = conv3d(x, base_filters, (3, 1, 1), name=f"{name}_temporal")
        else:
            kernel_t = 3 if stem_kind == "3d" else 1
            x = conv3d(clip, base_filters, (kernel_t, 7, 7), strides=(1, 2, 2), name=name)
        x = batch_norm(x, norm=norm, name="s1_pathway0_stem_bn")
        x = keras.layers.ReLU(name="s1_pathway0_stem_relu")(x)
        outputs = {"slow_stem": x}

        in_channels = base_filters
        for stage, (blocks, multiplier) in enumerate(
            zip(STAGE_DEPTHS[depth], _STAGE_WIDTH_MULTIPLIERS)
        ):
            kind = conv_types[stage + 1]
            filters = base_filters * multiplier
            for block in range(blocks):
                stride = 2 if (block == 0 and stage > 0) else 1
                x = _basic_block(
                    x,
                    kind,
                    in_channels,
                    filters,
                    stride,
                    _block_mid_channels(mid_channels, in_channels, filters),
                    norm,
                    zero_init_final_bn,
                    name=f"s{stage + 2}_pathway0_res{block}",
                )
                in_channels = filters
            outputs[f"slow_res{stage + 2}"] = x

        super().__init__(inputs={"slow": clip}, outputs=outputs, **kwargs)

        # === Config ===
        self.variant = variant
        self.depth = depth
        self.num_frames = num_frames
        self.base_filters = base_filters
        self.mid_channels = mid_channels
        self.stem_mid_channels = stem_mid_channels
        self.image_size = image_size
        self.norm = norm
        self.zero_init_final_bn = zero_init_final_bn
        # Derived attributes shared with the SlowFast family, so ``SlowFastVideoClassifier``
        # (head pool ``T_out x crop/16 x crop/16``), the data layer and the converters treat every
        # backbone alike.
        self.conv_types = conv_types
        self.pathways = ("slow",)
        self.input_frames = {"slow": num_frames}
        self.output_frames = {"slow": output_frames(variant, num_frames)}
        # Stride-2 stem (no max-pool) and three stride-2 stages: 112 -> 7.
        self.output_stride = 16
        self.output_channels = {"slow": base_filters * _STAGE_WIDTH_MULTIPLIERS[-1]}

    def call(self, inputs, training=None, mask=None):
        _validate_inputs(inputs, self.num_frames)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "variant": self.variant,
            "depth": self.depth,
            "num_frames": self.num_frames,
            "base_filters": self.base_filters,
            "mid_channels": self.mid_channels,
            "stem_mid_channels": self.stem_mid_channels,
            "image_size": self.image_size,
            "norm": self.norm,
            "zero_init_final_bn": self.zero_init_final_bn,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
