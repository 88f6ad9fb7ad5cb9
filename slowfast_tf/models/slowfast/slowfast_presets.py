"""Named presets of the SlowFast family (PySlowFast ``configs/Kinetics``) and ``build_model``.

Preset names follow ``{arch}[_nln]_r{depth}[_{temporal kernels}]_{T}x{tau}``: ``T x tau`` is the
*slow* pathway's frames x temporal stride (PySlowFast naming), so ``slowfast_r50_8x8`` reads 32
fast frames at stride 2 (``num_frames=32``) and keeps every alpha=4th for the slow pathway.
"""

import dataclasses
from types import MappingProxyType

from slowfast_tf.clip_spec import ClipSpec, get_clip_spec
from slowfast_tf.models.common.presets import PresetFamily
from slowfast_tf.models.slowfast.slowfast_backbone import SlowFastBackbone
from slowfast_tf.models.slowfast.slowfast_video_classifier import SlowFastVideoClassifier


@dataclasses.dataclass(frozen=True)
class SlowFastPreset:
    """A frozen recipe: backbone kwargs plus the name of the clip spec the weights were trained on.

    Args:
        description: str, one line.
        backbone: dict of ``SlowFastBackbone`` kwargs.
        clip_spec: str, a key of ``slowfast_tf.clip_spec.CLIP_SPECS`` (frames, sampling rate,
            crops, short side, mean/std); ``get_clip_spec()`` returns it.
    """

    description: str
    backbone: dict
    clip_spec: str

    def get_clip_spec(self) -> ClipSpec:
        """The named `ClipSpec`."""
        return get_clip_spec(self.clip_spec)

    @property
    def sampling_rate(self) -> int:
        """Temporal stride of the decoded clip at 30 fps (from the clip spec)."""
        return self.get_clip_spec().sampling_rate

    @property
    def train_crop_size(self) -> int:
        """Training crop (fixes the head pool kernel), from the clip spec."""
        return self.get_clip_spec().train_crop

    @property
    def test_crop_size(self) -> int:
        """Test crop (fully convolutional testing; 256 in the paper), from the clip spec."""
        return self.get_clip_spec().test_crop

    @property
    def num_frames(self) -> int:
        """Frames of the decoded clip (the fast pathway's T for SlowFast)."""
        return self.backbone["num_frames"]

    @property
    def alpha(self) -> int:
        return self.backbone.get("alpha", 4)

    @property
    def frames(self) -> dict:
        """``{pathway: frames}`` the model takes, e.g. ``{"slow": 8, "fast": 32}``."""
        arch = self.backbone.get("arch", "slowfast")
        if arch == "slowfast":
            return {"slow": self.num_frames // self.alpha, "fast": self.num_frames}
        return {"fast" if arch == "fast" else "slow": self.num_frames}


def _sf(depth, num_frames, alpha, fusion_kernel_size, **extra):
    return dict(
        arch="slowfast",
        depth=depth,
        num_frames=num_frames,
        alpha=alpha,
        beta_inv=8,
        fusion_kernel_size=fusion_kernel_size,
        fusion_channel_ratio=2,
        **extra,
    )


# Only the first 6 res4 blocks keep a temporal kernel in the "R101_50_50" variant (as in R50).
_R101_50_50 = [3, 4, 6, 3]
_NLN_R50 = [[], [1, 3], [1, 3, 5], []]
_NLN_R101 = [[], [], [6, 13, 20], []]

_PRESETS = {
    "slowfast_r50_4x16": SlowFastPreset(
        "SlowFast R50 4x16 (K400 75.6 top-1)", _sf(50, 32, 8, 5), clip_spec="slowfast_4x16"
    ),
    "slowfast_r50_8x8": SlowFastPreset(
        "SlowFast R50 8x8, fusion kernel 7 (K400 77.0 top-1)", _sf(50, 32, 4, 7), clip_spec="slowfast_8x8"
    ),
    "slowfast_r50_16x8": SlowFastPreset(
        "SlowFast R50 16x8 (Charades / SSv2 recipe)", _sf(50, 64, 4, 7), clip_spec="slowfast_16x8"
    ),
    "slowfast_r101_8x8": SlowFastPreset(
        "SlowFast R101 8x8, temporal kernels in all blocks (K400 78.0 top-1)",
        _sf(101, 32, 4, 5),
        clip_spec="slowfast_8x8",
    ),
    "slowfast_r101_50_101_8x8": SlowFastPreset(
        "SlowFast R101 8x8, slow res4 temporal kernels in 6 blocks, fast in 23",
        _sf(101, 32, 4, 5, num_block_temp_kernel=[3, 4, [6, 23], 3]),
        clip_spec="slowfast_8x8",
    ),
    "slowfast_r101_50_50_8x8": SlowFastPreset(
        "SlowFast R101 8x8 with R50 temporal kernels (paper Table 2: 106 GF)",
        _sf(101, 32, 4, 5, num_block_temp_kernel=_R101_50_50),
        clip_spec="slowfast_8x8",
    ),
    "slowfast_r101_50_50_16x8": SlowFastPreset(
        "SlowFast R101 16x8 with R50 temporal kernels (K400 78.9 top-1)",
        _sf(101, 64, 4, 5, num_block_temp_kernel=_R101_50_50),
        clip_spec="slowfast_16x8",
    ),
    "slowfast_nln_r50_4x16": SlowFastPreset(
        "SlowFast R50 4x16 + 5 dot-product non-local blocks (res3 [1,3], res4 [1,3,5])",
        _sf(50, 32, 8, 5, nonlocal_locations=_NLN_R50),
        clip_spec="slowfast_4x16",
    ),
    "slowfast_nln_r50_8x8": SlowFastPreset(
        "SlowFast R50 8x8 + 5 dot-product non-local blocks (fusion kernel 5, as PySlowFast)",
        _sf(50, 32, 4, 5, nonlocal_locations=_NLN_R50),
        clip_spec="slowfast_8x8",
    ),
    "slowfast_nln_r101_50_50_16x8": SlowFastPreset(
        "SlowFast R101 16x8 + 3 dot-product non-local blocks in res4 [6,13,20] (K400 79.8)",
        _sf(101, 64, 4, 5, num_block_temp_kernel=_R101_50_50, nonlocal_locations=_NLN_R101),
        clip_spec="slowfast_16x8",
    ),
    "slow_r50_4x16": SlowFastPreset(
        "Slow-only R50 4x16 (K400 72.6 top-1)",
        dict(arch="slow", depth=50, num_frames=4),
        clip_spec="slow_4x16",
    ),
    "slow_r50_8x8": SlowFastPreset(
        "Slow-only R50 8x8 (K400 74.8 top-1)",
        dict(arch="slow", depth=50, num_frames=8),
        clip_spec="slow_8x8",
    ),
    "slow_nln_r50_8x8": SlowFastPreset(
        "Slow-only R50 8x8 + 5 dot-product non-local blocks",
        dict(arch="slow", depth=50, num_frames=8, nonlocal_locations=_NLN_R50),
        clip_spec="slow_8x8",
    ),
    "fast_r50_32x2": SlowFastPreset(
        "Fast-only R50 (the fast pathway alone: 32 frames at stride 2, width 64/8)",
        dict(arch="fast", depth=50, num_frames=32, beta_inv=8),
        clip_spec="fast_32x2",
    ),
    "c2d_r50_8x8": SlowFastPreset(
        "C2D R50 8x8 (no temporal convs; temporal max-pool /2 after res2)",
        dict(arch="c2d", depth=50, num_frames=8),
        clip_spec="c2d_8x8",
    ),
    "c2d_nln_r50_8x8": SlowFastPreset(
        "C2D R50 8x8 + 5 softmax non-local blocks",
        dict(arch="c2d", depth=50, num_frames=8, nonlocal_locations=_NLN_R50,
             nonlocal_instantiation="softmax"),
        clip_spec="c2d_8x8",
    ),
    "i3d_r50_8x8": SlowFastPreset(
        "I3D R50 8x8 (inflated 3x1x1 kernels; temporal max-pool /2 after res2)",
        dict(arch="i3d", depth=50, num_frames=8),
        clip_spec="i3d_8x8",
    ),
    "i3d_nln_r50_8x8": SlowFastPreset(
        "I3D R50 8x8 + 5 softmax non-local blocks",
        dict(arch="i3d", depth=50, num_frames=8, nonlocal_locations=_NLN_R50,
             nonlocal_instantiation="softmax"),
        clip_spec="i3d_8x8",
    ),
    "i3d_r101_8x8": SlowFastPreset(
        "I3D R101 8x8",
        dict(arch="i3d", depth=101, num_frames=8),
        clip_spec="i3d_8x8",
    ),
}
PRESETS = MappingProxyType(_PRESETS)

_FAMILY = PresetFamily(PRESETS, SlowFastBackbone, SlowFastVideoClassifier)
list_presets = _FAMILY.list_presets
get_preset = _FAMILY.get_preset
build_backbone = _FAMILY.build_backbone
build_model = _FAMILY.build_model
