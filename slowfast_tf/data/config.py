"""`DataConfig`: every knob of the video input pipeline, with presets named like the clip specs.

`DataConfig` extends `slowfast_tf.clip_spec.ClipSpec` (the one owner of the clip settings and of
their frame-count convention: ``num_frames`` is the decoded clip, the fast pathway's T) with the
dataset and evaluation settings (views, labels, temporal sampling rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from slowfast_tf.clip_spec import CLIP_SPECS, ClipSpec


@dataclass(frozen=True)
class DataConfig(ClipSpec):
    """Video input pipeline settings: a `ClipSpec` plus the dataset and evaluation settings.

    The clip fields (`num_frames`, `sampling_rate`, `target_fps`, `alpha`, `pathways`,
    `train_crop`, `test_crop`, `test_short_side`, `train_jitter_scales`, `mean`, `std`) and their
    validation belong to `slowfast_tf.clip_spec.ClipSpec` (see there); `clip_spec` returns them as
    a plain `ClipSpec`. PySlowFast names in brackets.

    Args:
        random_flip: bool, horizontal flip with p=0.5 in training [DATA.RANDOM_FLIP]. Turn it off
            for datasets whose labels depend on left/right (Something-Something).
        num_clips: int, temporal views per video at test time [TEST.NUM_ENSEMBLE_VIEWS].
        num_crops: int, spatial views per clip at test time, 1 or 3 [TEST.NUM_SPATIAL_CROPS].
        multi_label: bool, labels are multi-hot float ``[C]`` instead of an int index
            [MODEL.MULTI_LABEL].
        num_classes: int, number of classes (needed for multi-hot labels) [MODEL.NUM_CLASSES].
        temporal_sampling: ``"kinetics"`` (window ``sampling_rate * num_frames`` at
            `target_fps`, test start ``delta * k / num_clips``) or ``"charades"`` (PySlowFast
            ``charades.py``: ``(num_frames - 1) * sampling_rate + 1`` consecutive native frames,
            no fps resampling, test start ``round(k * max(L - clip, 0) / (num_clips - 1))``, and
            a train label = union of the per-frame labels inside the window).
    """

    random_flip: bool = True
    num_clips: int = 10
    num_crops: int = 3
    multi_label: bool = False
    num_classes: int = 400
    temporal_sampling: str = "kinetics"

    def __post_init__(self):
        super().__post_init__()
        for name in ("num_clips", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.temporal_sampling not in ("kinetics", "charades"):
            raise ValueError(
                "temporal_sampling must be 'kinetics' or 'charades'. "
                f"Received: temporal_sampling={self.temporal_sampling!r}"
            )
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3. Received: num_crops={self.num_crops}")

    @classmethod
    def from_clip_spec(cls, spec: ClipSpec, **fields) -> DataConfig:
        """A `DataConfig` with the clip fields of `spec` and the other `fields`."""
        return cls(**spec.clip_spec.to_dict(), **fields)

    @property
    def num_views(self) -> int:
        """Test views per video (``num_clips * num_crops``)."""
        return self.num_clips * self.num_crops


def _data(spec_name: str, **fields) -> DataConfig:
    return DataConfig.from_clip_spec(CLIP_SPECS[spec_name], **fields)


# Clip settings come from the named clip specs (`slowfast_tf.clip_spec.CLIP_SPECS`); a data preset
# adds the dataset and evaluation settings. Every clip spec a classifier preset names has a data
# preset of the same name, which `get_data_config(<model preset>)` returns.
DATA_PRESETS: dict[str, DataConfig] = {
    # Kinetics-400, PySlowFast configs/Kinetics/*.yaml: 10 clips x 3 crops at test time.
    **{name: _data(name) for name in (
        "slowfast_8x8", "slowfast_4x16", "slowfast_16x8", "slow_8x8", "slow_4x16", "fast_32x2",
        "c2d_8x8", "i3d_8x8",
    )},
    # Charades SLOWFAST_16x8_R50: multi-label (157 classes).
    "charades_slowfast_16x8": _data(
        "charades_slowfast_16x8", multi_label=True, num_classes=157, temporal_sampling="charades"
    ),
    # The embedded synthetic dataset: 6 classes, 3 clips x 1 crop.
    "synthetic_slowfast": _data("synthetic_slowfast", num_clips=3, num_crops=1, num_classes=6),
    "synthetic_slow": _data("synthetic_slow", num_clips=3, num_crops=1, num_classes=6),
    # R(2+1)D paper family (VMZ recipe): 10 clips x 1 centre crop at test time.
    "r2plus1d_16x1": _data("r2plus1d_16x1", num_clips=10, num_crops=1),
    "r2plus1d_torchvision_16x1": _data("r2plus1d_torchvision_16x1", num_clips=10, num_crops=1),
}


def get_data_config(name: str, **overrides) -> DataConfig:
    """Returns a data preset, optionally with fields overridden.

    A model preset name is accepted too: it resolves to the data preset named like the clip spec
    the model preset names (``slowfast_r101_50_50_16x8`` -> ``clip_spec="slowfast_16x8"``).

    Args:
        name: str, a key of `DATA_PRESETS` or a model preset name.
        **overrides: DataConfig fields to replace (e.g. ``num_classes=10``).

    Returns:
        DataConfig.
    """
    key = name
    if key not in DATA_PRESETS:
        from slowfast_tf import models  # lazy: the data layer does not need Keras otherwise

        if name in models.PRESETS:
            key = models.get_preset(name).clip_spec
    if key not in DATA_PRESETS:
        raise ValueError(
            f"Unknown data preset. Expected one of {sorted(DATA_PRESETS)} or a classifier preset "
            f"of slowfast_tf.models. Received: name={name!r}"
        )
    config = DATA_PRESETS[key]
    return config.replace(**overrides) if overrides else config
