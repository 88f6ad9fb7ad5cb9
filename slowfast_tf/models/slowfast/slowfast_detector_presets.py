"""AVA detection presets (PySlowFast ``configs/AVA``, PyTorchVideo ``slowfast_r50_detection``).

Every preset uses the AVA backbone change (res5 spatial stride 1, dilation 2: feature stride 16)
and PySlowFast's ``ResNetRoIHead`` (:class:`SlowFastDetector`). ``build_model`` returns the
detector (80 classes by default); the top-level ``slowfast_tf.models.build_model`` dispatches
here for these names.
"""

import dataclasses
from types import MappingProxyType

from slowfast_tf.models.common.presets import PresetFamily, clip_spec_for
from slowfast_tf.models.slowfast.slowfast_backbone import SlowFastBackbone
from slowfast_tf.models.slowfast.slowfast_detector import SlowFastDetector
from slowfast_tf.models.slowfast.slowfast_presets import SlowFastPreset

# Keyword arguments of ``build_model`` that configure the detector head, not the backbone.
DETECTOR_KWARGS = (
    "dropout", "roi_output_size", "spatial_scale", "sampling_ratio", "aligned", "activation",
    "max_boxes", "clip_spec",
)  # fmt: skip
AVA_NUM_CLASSES = 80


@dataclasses.dataclass(frozen=True)
class SlowFastDetectorPreset(SlowFastPreset):
    """A detection recipe: ``SlowFastPreset`` fields plus the RoI head and box settings.

    ``clip_spec`` names one of the ``ava_*`` clip specs (their test view is the whole frame at
    short side ``test_short_side``).

    Args:
        aligned: bool, RoIAlign ``aligned`` (``DETECTION.ALIGNED``): True in the ``*_SHORT``
            configs, False in the released ``c2`` models and PyTorchVideo.
        box_score_threshold: float, person-detector score threshold of the recipe
            (``AVA.DETECTION_SCORE_THRESH``: 0.8 for SlowFast, 0.9 for Slow-only).
    """

    aligned: bool = True
    box_score_threshold: float = 0.8


_AVA_STRIDES = dict(spatial_strides=(1, 2, 2, 1), spatial_dilations=(1, 1, 1, 2))


def _sf(depth, fusion_kernel_size, **extra):
    return dict(
        arch="slowfast", depth=depth, num_frames=32, alpha=4, beta_inv=8,
        fusion_kernel_size=fusion_kernel_size, fusion_channel_ratio=2, **_AVA_STRIDES, **extra,
    )  # fmt: skip


_PRESETS = {
    "slowfast_r50_ava_32x2": SlowFastDetectorPreset(
        "SlowFast R50 32x2 AVA detector (configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml)",
        _sf(50, 7),
        clip_spec="ava_slowfast_32x2",
        aligned=True,
        box_score_threshold=0.8,
    ),
    "slowfast_r101_50_50_ava_32x2": SlowFastDetectorPreset(
        "SlowFast R101 32x2 AVA detector, R50 temporal kernels + 3 non-local blocks in res4 "
        "(configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml)",
        _sf(
            101,
            5,
            num_block_temp_kernel=[3, 4, 6, 3],
            nonlocal_locations=[[], [], [6, 13, 20], []],
            nonlocal_pool=(2, 2, 2),
        ),
        clip_spec="ava_slowfast_32x2_c2",
        aligned=False,
        box_score_threshold=0.8,
    ),
    "slow_r50_ava_4x16": SlowFastDetectorPreset(
        "Slow-only R50 4x16 AVA detector (configs/AVA/SLOW_8x8_R50_SHORT.yaml: 4 frames x 16)",
        dict(arch="slow", depth=50, num_frames=4, **_AVA_STRIDES),
        clip_spec="ava_slow_4x16",
        aligned=True,
        box_score_threshold=0.9,
    ),
    "slowfast_r50_detection": SlowFastDetectorPreset(
        "PyTorchVideo slowfast_r50_detection (SLOWFAST_8x8_R50_DETECTION.pyth): SlowFast R50 "
        "8x8, fusion kernel 7, RoIAlign aligned=False",
        _sf(50, 7),
        clip_spec="ava_slowfast_32x2_c2",
        aligned=False,
        box_score_threshold=0.8,
    ),
}
PRESETS = MappingProxyType(_PRESETS)


class _DetectorPresetFamily(PresetFamily):
    """``PresetFamily`` whose ``build_model`` builds a :class:`SlowFastDetector`."""

    def build_model(self, preset_name, num_classes=AVA_NUM_CLASSES, **overrides):
        """Builds the detector of a preset.

        Args:
            preset_name: str, one of ``list_presets()``.
            num_classes: int, 80 for AVA.
            **overrides: any backbone kwarg (e.g. ``depth=18, width=8, image_size=64`` for a
                tiny model) or detector kwarg (``dropout``, ``roi_output_size``,
                ``spatial_scale``, ``sampling_ratio``, ``aligned``, ``activation``,
                ``max_boxes``, ``clip_spec``); ``aligned`` defaults to the preset's, ``clip_spec``
                to the preset's named spec.

        Returns:
            ``SlowFastDetector``; output logits ``[B, max_boxes, num_classes]``.
        """
        preset = self.get_preset(preset_name)
        head_kwargs = {k: overrides.pop(k) for k in DETECTOR_KWARGS if k in overrides}
        head_kwargs.setdefault("aligned", preset.aligned)
        backbone = self.backbone_cls(**{**preset.backbone, **overrides})
        if head_kwargs.get("clip_spec") is None:
            head_kwargs["clip_spec"] = clip_spec_for(preset, backbone)
        return self.classifier_cls(
            backbone, num_classes=num_classes, name=preset_name, **head_kwargs
        )


_FAMILY = _DetectorPresetFamily(PRESETS, SlowFastBackbone, SlowFastDetector)
list_presets = _FAMILY.list_presets
get_preset = _FAMILY.get_preset
build_backbone = _FAMILY.build_backbone
build_model = _FAMILY.build_model
