"""R(2+1)D paper family (Tran et al., CVPR 2018): R2D, f-R2D, R3D, MCx, rMCx, R(2+1)D."""

from slowfast_tf.models.r2plus1d.r2plus1d_backbone import (
    MID_CHANNEL_RULES,
    STAGE_DEPTHS,
    VARIANTS,
    R2Plus1DBackbone,
    factorized_mid_channels,
    variant_conv_types,
)
from slowfast_tf.models.r2plus1d.r2plus1d_presets import (
    PRESETS,
    R2Plus1DPreset,
    build_backbone,
    build_model,
    get_preset,
    list_presets,
)
from slowfast_tf.models.r2plus1d.r2plus1d_torchvision import (
    TORCHVISION_MEAN,
    TORCHVISION_STD,
    load_torchvision_weights,
    torchvision_layer_map,
)

__all__ = [
    "MID_CHANNEL_RULES",
    "PRESETS",
    "STAGE_DEPTHS",
    "TORCHVISION_MEAN",
    "TORCHVISION_STD",
    "VARIANTS",
    "R2Plus1DBackbone",
    "R2Plus1DPreset",
    "build_backbone",
    "build_model",
    "factorized_mid_channels",
    "get_preset",
    "list_presets",
    "load_torchvision_weights",
    "torchvision_layer_map",
    "variant_conv_types",
]
