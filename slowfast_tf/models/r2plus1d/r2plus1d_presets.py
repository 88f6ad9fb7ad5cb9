"""Named presets of the R(2+1)D paper family and ``build_model``.

Names are ``{variant}_r{depth}``: ``r2d``, ``fr2d``, ``r3d``, ``mc2`` .. ``mc5``, ``rmc2`` ..
``rmc5``, ``r2plus1d`` at depth 18 or 34 (paper Table 1), plus ``r2plus1d_r18_torchvision``, whose
mid channels match ``torchvision.models.video.r2plus1d_18`` so its Kinetics weights can be ported.

Clips follow the paper and the authors' VMZ scripts: L consecutive frames (sampling rate 1),
resized to 128x171 and cropped to 112x112. Every preset uses L = 16 (the paper compares 8 and 16
in Table 2; torchvision's weights are 16-frame); pass ``num_frames=8`` or ``32`` to change it (R3D
and R(2+1)D need a multiple of 8, see ``R2Plus1DBackbone``).

The classifier is the project's ``SlowFastVideoClassifier`` head, which matches VMZ's: average
pool ``T_out x 7 x 7`` at the 112 train crop (global there, fully convolutional above), then a
linear layer. VMZ trains without dropout, so ``dropout`` defaults to 0 here.
"""

import dataclasses
from types import MappingProxyType

from slowfast_tf.models.common.presets import PresetFamily
from slowfast_tf.models.r2plus1d.r2plus1d_backbone import VARIANTS, R2Plus1DBackbone
from slowfast_tf.models.slowfast.slowfast_presets import SlowFastPreset
from slowfast_tf.models.slowfast.slowfast_video_classifier import SlowFastVideoClassifier

# VMZ's R18/R34 Kinetics models have no dropout before the final FC layer.
DEFAULT_DROPOUT = 0.0


@dataclasses.dataclass(frozen=True)
class R2Plus1DPreset(SlowFastPreset):
    """A frozen recipe: backbone kwargs plus the name of its clip spec (the paper's sampling).

    Same fields as ``SlowFastPreset`` so the two registries can be merged.

    Args:
        description: str, one line.
        backbone: dict of ``R2Plus1DBackbone`` kwargs.
        clip_spec: str, a key of ``slowfast_tf.clip_spec.CLIP_SPECS``: ``"r2plus1d_16x1"`` (16
            consecutive frames, short side 128, 112 crops), or ``"r2plus1d_torchvision_16x1"``
            (the same with torchvision's mean/std).
    """

    clip_spec: str = "r2plus1d_16x1"

    @property
    def num_frames(self) -> int:
        """Frames of the decoded clip."""
        return self.backbone["num_frames"]

    @property
    def frames(self) -> dict:
        """``{pathway: frames}`` the model takes: ``{"slow": L}``."""
        return {"slow": self.num_frames}


_DESCRIPTIONS = {
    "r2d": "R2D: 2D convs over the whole clip (L frames folded into conv1's channels)",
    "fr2d": "f-R2D: 2D convs on each frame, temporal pooling only at the end",
    "r3d": "R3D: 3x3x3 convs throughout",
    "r2plus1d": "R(2+1)D: every 3x3x3 conv factorised into 1x3x3 + BN + ReLU + 3x1x1 (Eq. 1)",
}


def _description(variant, depth):
    if variant in _DESCRIPTIONS:
        return f"{_DESCRIPTIONS[variant]}, ResNet-{depth}, 16x112x112 clips"
    level = variant[-1]
    if variant.startswith("mc"):
        layout = f"3D convs in conv1..conv{int(level) - 1}_x, 2D from conv{level}_x"
        return f"MC{level}: {layout}, ResNet-{depth}, 16x112x112 clips"
    layout = f"2D convs in conv1..conv{int(level) - 1}_x, 3D from conv{level}_x"
    return f"rMC{level}: {layout}, ResNet-{depth}, 16x112x112 clips"


_PRESETS = {
    f"{variant}_r{depth}": R2Plus1DPreset(
        _description(variant, depth), dict(variant=variant, depth=depth, num_frames=16)
    )
    for depth in (18, 34)
    for variant in VARIANTS
}
_PRESETS["r2plus1d_r18_torchvision"] = R2Plus1DPreset(
    "R(2+1)D-18 with torchvision's per-block mid channels (31.5M params with a 400-way head)",
    dict(variant="r2plus1d", depth=18, num_frames=16, mid_channels="torchvision"),
    clip_spec="r2plus1d_torchvision_16x1",
)
PRESETS = MappingProxyType(_PRESETS)

_FAMILY = PresetFamily(
    PRESETS, R2Plus1DBackbone, SlowFastVideoClassifier, head_defaults={"dropout": DEFAULT_DROPOUT}
)
list_presets = _FAMILY.list_presets
get_preset = _FAMILY.get_preset
build_backbone = _FAMILY.build_backbone
build_model = _FAMILY.build_model
