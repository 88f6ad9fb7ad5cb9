"""SlowFast backbone family (SlowFast, Slow-only, Fast-only, C2D, I3D) as one functional Keras model.

Paper: Feichtenhofer, Fan, Malik, He. "SlowFast Networks for Video Recognition", ICCV 2019,
https://arxiv.org/abs/1812.03982. Architecture details follow PySlowFast's
``video_model_builder.py`` / ``resnet_helper.py`` (see docs/DESIGN.md and REFERENCE_SPEC.md).
"""

import math

import keras

from slowfast_tf.models.common.torch_layers import NORM_TYPES, max_pool3d
from slowfast_tf.models.slowfast.slowfast_layers import (
    FAST_INPUT_CHANNELS,
    FAST_INPUT_KINDS,
    FAST_RESOLUTIONS,
    LATERAL_TYPES,
    NONLOCAL_INSTANTIATIONS,
    FastInputTransform,
    basic_stem,
    fuse_fast_to_slow,
    res_stage,
)

ARCHS = ("slowfast", "slow", "fast", "c2d", "i3d")
STAGE_DEPTHS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# Temporal kernel basis per pathway: [stem, res2, res3, res4, res5]; a stage's block i uses
# basis[i % len(basis)] (PySlowFast `_TEMPORAL_KERNEL_BASIS`). Slow has no temporal conv before
# res4 because early temporal convs hurt when the frame rate is low (paper section 3.1).
_SLOW_BASIS = ((1,), (1,), (1,), (3,), (3,))
_FAST_BASIS = ((5,), (3,), (3,), (3,), (3,))
TEMPORAL_KERNEL_BASIS = {
    "slowfast": (_SLOW_BASIS, _FAST_BASIS),
    "slow": (_SLOW_BASIS,),
    "fast": (_FAST_BASIS,),
    "c2d": (((1,), (1,), (1,), (1,), (1,)),),
    "i3d": (((5,), (3,), (3, 1), (3, 1), (1, 3)),),
}
# Temporal max-pool stride after res2 (PySlowFast `_POOL1`): C2D and I3D halve T there.
POOL1_T = {"slowfast": (1, 1), "slow": (1,), "fast": (1,), "c2d": (2,), "i3d": (2,)}
PATHWAYS = {
    "slowfast": ("slow", "fast"),
    "slow": ("slow",),
    "fast": ("fast",),
    "c2d": ("slow",),
    "i3d": ("slow",),
}


def validate_pathway_inputs(inputs, pathways, frames):
    """Raises a clear ``ValueError`` when ``inputs`` is not the ``{pathway: clip}`` dict a model
    expects (a PySlowFast-style ``[slow, fast]`` list, wrong keys, or a wrong number of frames)."""
    if not isinstance(inputs, dict):
        raise ValueError(
            f"Inputs must be a dict keyed by pathway with keys {sorted(pathways)} "
            "(e.g. from `slowfast_tf.data.pack_pathways`), not a list or tensor. "
            f"Received: type(inputs)={type(inputs).__name__}"
        )
    if set(inputs) != set(pathways):
        raise ValueError(
            f"Input dict keys must be exactly {sorted(pathways)}. Received: keys={sorted(inputs)}"
        )
    for key in pathways:
        shape = inputs[key].shape
        if len(shape) != 5:
            raise ValueError(
                f"Input {key!r} must be a 5D clip [batch, frames, height, width, 3]. "
                f"Received: shape={tuple(shape)}"
            )
        if shape[1] is not None and shape[1] != frames[key]:
            raise ValueError(
                f"Input {key!r} must have {frames[key]} frames (model built for "
                f"{frames}). Received: shape={tuple(shape)}"
            )


def _normalize_num_block_temp_kernel(value, depths, num_pathways):
    if value is None:
        return [[d] * num_pathways for d in depths]
    value = list(value)
    if len(value) != 4:
        raise ValueError(
            "`num_block_temp_kernel` must have 4 entries (res2..res5), each an int or a "
            f"per-pathway list. Received: num_block_temp_kernel={value}"
        )
    out = []
    for stage, (entry, depth) in enumerate(zip(value, depths)):
        entry = [int(entry)] * num_pathways if isinstance(entry, int) else [int(e) for e in entry]
        if len(entry) != num_pathways or any(not 0 <= e <= depth for e in entry):
            raise ValueError(
                f"`num_block_temp_kernel` entry for res{stage + 2} must be {num_pathways} ints "
                f"in [0, {depth}]. Received: num_block_temp_kernel={value}"
            )
        out.append(entry)
    return out


def _normalize_nonlocal_locations(value, depths):
    if value is None:
        return [[], [], [], []]
    value = [list(v) for v in value]
    if len(value) != 4:
        raise ValueError(
            "`nonlocal_locations` must be 4 lists of block indices (res2..res5, slow pathway). "
            f"Received: nonlocal_locations={value}"
        )
    for stage, (entry, depth) in enumerate(zip(value, depths)):
        if any(not 0 <= int(i) < depth for i in entry):
            raise ValueError(
                f"`nonlocal_locations` for res{stage + 2} must be block indices in [0, {depth}). "
                f"Received: nonlocal_locations={value}"
            )
    return [[int(i) for i in entry] for entry in value]


def _int_tuple(value, length, name):
    value = tuple(int(v) for v in value)
    if len(value) != length or any(v < 1 for v in value):
        raise ValueError(f"`{name}` must be {length} positive ints. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="slowfast_tf")
class SlowFastBackbone(keras.Model):
    """SlowFast video backbone (and its single-pathway relatives) returning per-stage endpoints.

    ```
    fast {B, alpha*T, H, W, 3} -> stem(5x7x7) -> res2 -> res3 -> res4 -> res5 -> fast_res5
                                  |  (lateral: T-strided conv, stride alpha)
    slow {B, T, H, W, 3} ------> stem(1x7x7) -> [+] res2 -> [+] res3 -> [+] res4 -> [+] res5
    ```
    Paper mapping: ``alpha`` = frame-rate ratio (fast frames / slow frames), ``beta_inv`` =
    1/beta (slow channels / fast channels), tau (slow temporal stride) belongs to the data layer
    (``pack_pathways``). The lateral ``s{k}_fuse`` joins fast into slow after the stem and res2-4.

    Args:
        arch: str, ``"slowfast"`` (inputs ``{"slow", "fast"}``), ``"slow"``, ``"c2d"``, ``"i3d"``
            (input ``{"slow"}``) or ``"fast"`` (input ``{"fast"}``, width ``width // beta_inv``).
        depth: int, 18, 50 or 101 (bottleneck blocks; 18 = stage sizes (2,2,2,2) as PySlowFast).
        num_frames: int, PySlowFast ``NUM_FRAMES``: the fast clip length for ``slowfast`` (slow gets
            ``num_frames // alpha``), the clip length for single-pathway models.
        alpha: int, frame-rate ratio between the pathways.
        beta_inv: int, channel ratio (fast width = ``width // beta_inv``).
        width: int, base width (64 in every paper model); stage widths are ``width * {1,2,4,8}``.
        fusion_kernel_size: int, odd temporal kernel of the lateral conv (5, or 7 for 8x8 R50).
        fusion_channel_ratio: int, lateral conv outputs ``ratio * C_fast`` channels.
        lateral_type: str, one of ``LATERAL_TYPES`` (see ``fuse_fast_to_slow``).
        fast_input: str, one of ``FAST_INPUT_KINDS`` (transform applied to the fast clip;
            ``"optical_flow"`` makes the fast input a 2-channel flow clip).
        fast_resolution: str, ``"full"`` or ``"half"`` (paper Table 5c "half spatial
            resolution", used there with ``beta_inv=4``): the fast clip is 2x2 average-pooled
            inside the model, so the data pipeline is unchanged, and each lateral's output is
            upsampled x2 before it joins the slow pathway. Needs H and W multiples of 32.
        num_block_temp_kernel: None or 4 entries (res2..res5), int or per-pathway ints: only the
            first n blocks of a stage use the temporal kernel basis, the rest use kernel 1
            (R101 "50_50" = ``[3, 4, 6, 3]``).
        nonlocal_locations: None or 4 lists (res2..res5) of slow-pathway block indices followed
            by a non-local block.
        nonlocal_instantiation: str, ``"dot_product"`` or ``"softmax"``.
        nonlocal_pool: 3 ints, max-pool of the phi/g input in non-local blocks.
        spatial_strides: 4 ints, spatial stride of res2..res5 (AVA: res5 stride 1).
        spatial_dilations: 4 ints, spatial dilation of res2..res5 (AVA: res5 dilation 2).
        image_size: None (any size, fully convolutional) or int, the square input side.
        norm: str, ``"batch_norm"`` or ``"sync_batch_norm"``.
    """

    def __init__(
        self,
        arch="slowfast",
        depth=50,
        num_frames=32,
        alpha=4,
        beta_inv=8,
        width=64,
        fusion_kernel_size=5,
        fusion_channel_ratio=2,
        lateral_type="time_strided_conv",
        fast_input="rgb",
        fast_resolution="full",
        num_block_temp_kernel=None,
        nonlocal_locations=None,
        nonlocal_instantiation="dot_product",
        nonlocal_pool=(1, 2, 2),
        spatial_strides=(1, 2, 2, 2),
        spatial_dilations=(1, 1, 1, 1),
        image_size=None,
        norm="batch_norm",
        **kwargs,
    ):
        # === Validation ===
        for value, choices, name in (
            (arch, ARCHS, "arch"),
            (lateral_type, LATERAL_TYPES, "lateral_type"),
            (fast_input, FAST_INPUT_KINDS, "fast_input"),
            (fast_resolution, FAST_RESOLUTIONS, "fast_resolution"),
            (nonlocal_instantiation, NONLOCAL_INSTANTIATIONS, "nonlocal_instantiation"),
            (norm, NORM_TYPES, "norm"),
        ):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"`depth` must be one of {tuple(STAGE_DEPTHS)}. Received: depth={depth}")
        for value, name in ((alpha, "alpha"), (beta_inv, "beta_inv"), (width, "width"),
                            (num_frames, "num_frames"), (fusion_channel_ratio, "fusion_channel_ratio")):
            if int(value) != value or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if fusion_kernel_size < 1 or fusion_kernel_size % 2 == 0:
            raise ValueError(
                "`fusion_kernel_size` must be a positive odd int (the lateral conv pads k//2 so "
                f"its output has T/alpha frames). Received: fusion_kernel_size={fusion_kernel_size}"
            )
        pathways = PATHWAYS[arch]
        if "fast" in pathways and width // beta_inv < 1:
            raise ValueError(
                f"`width // beta_inv` (fast pathway width) must be >= 1. "
                f"Received: width={width}, beta_inv={beta_inv}"
            )
        if "fast" not in pathways and fast_input != "rgb":
            raise ValueError(
                f"`fast_input` only applies to models with a fast pathway; arch={arch!r} has "
                f"pathways {pathways}. Received: fast_input={fast_input!r}"
            )
        if arch != "slowfast" and fast_resolution != "full":
            raise ValueError(
                "`fast_resolution` only applies to two-pathway models (the laterals upsample). "
                f"Received: arch={arch!r}, fast_resolution={fast_resolution!r}"
            )
        if fast_resolution == "half" and image_size is not None and image_size % 32:
            raise ValueError(
                "`fast_resolution='half'` needs `image_size` to be a multiple of 32 so the "
                f"upsampled laterals match the slow features. Received: image_size={image_size}"
            )
        if arch == "slowfast" and num_frames % alpha != 0:
            valid = [alpha * k for k in range(max(1, num_frames // alpha - 2), num_frames // alpha + 4)]
            raise ValueError(
                f"`num_frames` (fast pathway frames) must be a multiple of alpha={alpha} so that "
                f"the slow pathway gets num_frames/alpha frames and the lateral connections line "
                f"up (e.g. {valid}). Received: num_frames={num_frames}"
            )
        pool1_t = POOL1_T[arch]
        if num_frames < max(pool1_t):
            raise ValueError(
                f"arch={arch!r} halves time after res2, so `num_frames` must be >= 2. "
                f"Received: num_frames={num_frames}"
            )
        if image_size is not None and image_size < 32:
            raise ValueError(f"`image_size` must be None or >= 32. Received: image_size={image_size}")
        depths = STAGE_DEPTHS[depth]
        nbtk = _normalize_num_block_temp_kernel(num_block_temp_kernel, depths, len(pathways))
        nl_locations = _normalize_nonlocal_locations(nonlocal_locations, depths)
        nonlocal_pool = _int_tuple(nonlocal_pool, 3, "nonlocal_pool")
        spatial_strides = _int_tuple(spatial_strides, 4, "spatial_strides")
        spatial_dilations = _int_tuple(spatial_dilations, 4, "spatial_dilations")

        # === Functional Model ===
        if arch == "slowfast":
            input_frames = {"slow": num_frames // alpha, "fast": num_frames}
            widths = (width, width // beta_inv)
        else:
            input_frames = {pathways[0]: num_frames}
            widths = (width // beta_inv if arch == "fast" else width,)
        basis = TEMPORAL_KERNEL_BASIS[arch]
        inputs = {
            key: keras.Input(
                shape=(input_frames[key], image_size, image_size,
                       FAST_INPUT_CHANNELS.get(fast_input, 3) if key == "fast" else 3),
                name=key,
            )
            for key in pathways
        }
        xs = []
        for key in pathways:
            x = inputs[key]
            if key == "fast" and fast_input != "rgb":
                x = FastInputTransform(fast_input, name="fast_input_transform")(x)
            if key == "fast" and fast_resolution == "half":
                x = keras.layers.AveragePooling3D((1, 2, 2), name="fast_input_half")(x)
            xs.append(x)

        endpoints = {}
        for p, key in enumerate(pathways):
            xs[p] = basic_stem(xs[p], widths[p], basis[p][0][0], norm, name=f"s1_pathway{p}_stem")
            endpoints[f"{key}_stem"] = xs[p]

        def fuse(stage):
            if len(pathways) == 2:
                xs[0] = fuse_fast_to_slow(
                    xs[0], xs[1], lateral_type, alpha, fusion_kernel_size,
                    fusion_channel_ratio, norm, name=f"s{stage}_fuse",
                    fast_resolution=fast_resolution,
                )

        fuse(1)
        for j in range(4):
            stage = j + 2
            for p, key in enumerate(pathways):
                stage_basis = basis[p][stage - 1]
                n_temp = nbtk[j][p]
                kernels = [stage_basis[i % len(stage_basis)] for i in range(n_temp)]
                kernels += [1] * (depths[j] - n_temp)
                xs[p] = res_stage(
                    xs[p],
                    depths[j],
                    filters_out=widths[p] * 4 * 2**j,
                    filters_inner=widths[p] * 2**j,
                    temporal_kernels=kernels,
                    stride=spatial_strides[j],
                    dilation=spatial_dilations[j],
                    norm=norm,
                    name=f"s{stage}_pathway{p}",
                    nonlocal_indices=nl_locations[j] if p == 0 else (),
                    nonlocal_instantiation=nonlocal_instantiation,
                    nonlocal_pool=nonlocal_pool,
                )
                endpoints[f"{key}_res{stage}"] = xs[p]
            if stage < 5:
                fuse(stage)
            if stage == 2:
                for p in range(len(pathways)):
                    if pool1_t[p] > 1:
                        xs[p] = max_pool3d(xs[p], (pool1_t[p], 1, 1), name=f"pathway{p}_pool")

        kwargs.setdefault("name", "slowfast_backbone")  # stable name for converters / get_layer
        super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

        # === Config ===
        self.arch = arch
        self.depth = depth
        self.num_frames = num_frames
        self.alpha = alpha
        self.beta_inv = beta_inv
        self.width = width
        self.fusion_kernel_size = fusion_kernel_size
        self.fusion_channel_ratio = fusion_channel_ratio
        self.lateral_type = lateral_type
        self.fast_input = fast_input
        self.fast_resolution = fast_resolution
        self.num_block_temp_kernel = nbtk
        self.nonlocal_locations = nl_locations
        self.nonlocal_instantiation = nonlocal_instantiation
        self.nonlocal_pool = nonlocal_pool
        self.spatial_strides = spatial_strides
        self.spatial_dilations = spatial_dilations
        self.image_size = image_size
        self.norm = norm
        # Derived attributes used by heads, the data layer and the converters.
        self.pathways = pathways
        self.input_frames = input_frames
        self.output_frames = {
            key: input_frames[key] // pool1_t[p] for p, key in enumerate(pathways)
        }
        self.output_stride = 4 * math.prod(spatial_strides)  # stem conv + pool = 4
        self.output_channels = {key: widths[p] * 32 for p, key in enumerate(pathways)}

    def __call__(self, inputs, *args, **kwargs):
        # Validate before Keras's generic input-spec check so users get an actionable message.
        validate_pathway_inputs(inputs, self.pathways, self.input_frames)
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "arch": self.arch,
            "depth": self.depth,
            "num_frames": self.num_frames,
            "alpha": self.alpha,
            "beta_inv": self.beta_inv,
            "width": self.width,
            "fusion_kernel_size": self.fusion_kernel_size,
            "fusion_channel_ratio": self.fusion_channel_ratio,
            "lateral_type": self.lateral_type,
            "fast_input": self.fast_input,
            "fast_resolution": self.fast_resolution,
            "num_block_temp_kernel": [list(e) for e in self.num_block_temp_kernel],
            "nonlocal_locations": [list(e) for e in self.nonlocal_locations],
            "nonlocal_instantiation": self.nonlocal_instantiation,
            "nonlocal_pool": list(self.nonlocal_pool),
            "spatial_strides": list(self.spatial_strides),
            "spatial_dilations": list(self.spatial_dilations),
            "image_size": self.image_size,
            "norm": self.norm,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
