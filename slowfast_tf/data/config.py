"""`DataConfig`: every knob of the video input pipeline, with presets matching the model presets.

Frame-count convention (PySlowFast's): ``num_frames`` and ``sampling_rate`` describe the clip that
is *sampled*; for a two-pathway model that is the **fast** pathway (``T_f = num_frames``) and the
slow pathway gets ``num_frames // alpha`` of those frames (linspace, see ``pack_pathways``). For a
single-pathway model (Slow-only, C2D, I3D, Fast-only, R(2+1)D) the one pathway gets all
``num_frames`` frames at its own ``sampling_rate`` and ``alpha`` is not used: PySlowFast's Slow 8x8
is ``num_frames=8, sampling_rate=8``, not "32 frames, then keep every 4th".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

_VALID_PATHWAYS = (("slow", "fast"), ("slow",), ("fast",))


@dataclass(frozen=True)
class DataConfig:
    """Video input pipeline settings (PySlowFast ``DATA.*`` / ``TEST.*`` names in brackets).

    Args:
        num_frames: int, frames sampled per clip [DATA.NUM_FRAMES]; the fast pathway's T.
        sampling_rate: int, stride between sampled frames at `target_fps` [DATA.SAMPLING_RATE].
        target_fps: float, the frame rate `sampling_rate` refers to [DATA.TARGET_FPS]; a record at
            another fps gets a proportionally wider or narrower window.
        alpha: int, fast/slow frame-rate ratio [SLOWFAST.ALPHA]; only used with two pathways.
        pathways: tuple[str, ...], model input keys: ``("slow", "fast")``, ``("slow",)`` or
            ``("fast",)``.
        train_crop: int, train crop side [DATA.TRAIN_CROP_SIZE].
        test_crop: int, test crop side [DATA.TEST_CROP_SIZE].
        train_jitter_scales: tuple[int, int], short-side range for train scale jitter
            [DATA.TRAIN_JITTER_SCALES].
        random_flip: bool, horizontal flip with p=0.5 in training [DATA.RANDOM_FLIP]. Turn it off
            for datasets whose labels depend on left/right (Something-Something).
        num_clips: int, temporal views per video at test time [TEST.NUM_ENSEMBLE_VIEWS].
        num_crops: int, spatial views per clip at test time, 1 or 3 [TEST.NUM_SPATIAL_CROPS].
        mean: tuple[float, float, float], RGB mean in [0, 1] units [DATA.MEAN].
        std: tuple[float, float, float], RGB std in [0, 1] units [DATA.STD].
        multi_label: bool, labels are multi-hot float ``[C]`` instead of an int index
            [MODEL.MULTI_LABEL].
        num_classes: int, number of classes (needed for multi-hot labels) [MODEL.NUM_CLASSES].
        temporal_sampling: ``"kinetics"`` (window ``sampling_rate * num_frames`` at
            `target_fps`, test start ``delta * k / num_clips``) or ``"charades"`` (PySlowFast
            ``charades.py``: ``(num_frames - 1) * sampling_rate + 1`` consecutive native frames,
            no fps resampling, test start ``round(k * max(L - clip, 0) / (num_clips - 1))``, and
            a train label = union of the per-frame labels inside the window).
    """

    num_frames: int = 32
    sampling_rate: int = 2
    target_fps: float = 30.0
    alpha: int = 4
    pathways: tuple[str, ...] = ("slow", "fast")
    train_crop: int = 224
    test_crop: int = 256
    train_jitter_scales: tuple[int, int] = (256, 320)
    random_flip: bool = True
    num_clips: int = 10
    num_crops: int = 3
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    multi_label: bool = False
    num_classes: int = 400
    temporal_sampling: str = "kinetics"

    def __post_init__(self):
        pathways = tuple(self.pathways)
        object.__setattr__(self, "pathways", pathways)
        object.__setattr__(self, "train_jitter_scales", tuple(self.train_jitter_scales))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if pathways not in _VALID_PATHWAYS:
            raise ValueError(
                f"pathways must be one of {_VALID_PATHWAYS}. Received: pathways={pathways}"
            )
        for name in ("num_frames", "sampling_rate", "alpha", "train_crop", "test_crop",
                     "num_clips", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.target_fps <= 0:
            raise ValueError(f"target_fps must be > 0. Received: target_fps={self.target_fps}")
        if pathways == ("slow", "fast") and self.num_frames % self.alpha:
            # The fusion conv has temporal stride alpha, so T_f must be a multiple of alpha or the
            # lateral concat fails (PySlowFast #620, pytorchvideo #27).
            raise ValueError(
                "With two pathways num_frames must be a multiple of alpha. "
                f"Received: num_frames={self.num_frames}, alpha={self.alpha}"
            )
        lo, hi = self.train_jitter_scales if len(self.train_jitter_scales) == 2 else (0, -1)
        if not 0 < lo <= hi:
            raise ValueError(
                "train_jitter_scales must be (min, max) with 0 < min <= max. "
                f"Received: train_jitter_scales={self.train_jitter_scales}"
            )
        if lo < self.train_crop:
            raise ValueError(
                "The smallest jitter scale must be at least train_crop. "
                f"Received: train_jitter_scales={self.train_jitter_scales}, "
                f"train_crop={self.train_crop}"
            )
        if self.temporal_sampling not in ("kinetics", "charades"):
            raise ValueError(
                "temporal_sampling must be 'kinetics' or 'charades'. "
                f"Received: temporal_sampling={self.temporal_sampling!r}"
            )
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3. Received: num_crops={self.num_crops}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need 3 values, std > 0. Received: mean={self.mean}, std={self.std}"
            )

    @property
    def num_views(self) -> int:
        """Test views per video (``num_clips * num_crops``)."""
        return self.num_clips * self.num_crops

    def frames_per_pathway(self) -> dict[str, int]:
        """Frames each model input key receives, e.g. ``{"slow": 8, "fast": 32}``."""
        if self.pathways == ("slow", "fast"):
            return {"slow": self.num_frames // self.alpha, "fast": self.num_frames}
        return {self.pathways[0]: self.num_frames}

    def replace(self, **changes) -> DataConfig:
        """Returns a copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


_KINETICS = DataConfig()
_R2PLUS1D = DataConfig(
    num_frames=16, sampling_rate=1, pathways=("slow",), train_crop=112, test_crop=112,
    train_jitter_scales=(128, 128), num_clips=10, num_crops=1,
)

DATA_PRESETS: dict[str, DataConfig] = {
    # Kinetics-400, PySlowFast configs/Kinetics/*.yaml: fast 32 frames x rate 2 for every SlowFast.
    "slowfast_8x8": _KINETICS.replace(alpha=4),
    "slowfast_4x16": _KINETICS.replace(alpha=8),
    "slowfast_16x8": _KINETICS.replace(num_frames=64, alpha=4),
    "slow_8x8": _KINETICS.replace(num_frames=8, sampling_rate=8, pathways=("slow",)),
    "slow_4x16": _KINETICS.replace(num_frames=4, sampling_rate=16, pathways=("slow",)),
    "fast_32x2": _KINETICS.replace(pathways=("fast",)),
    "c2d_8x8": _KINETICS.replace(num_frames=8, sampling_rate=8, pathways=("slow",)),
    "i3d_8x8": _KINETICS.replace(num_frames=8, sampling_rate=8, pathways=("slow",)),
    # Charades SLOWFAST_16x8_R50: multi-label (157 classes), jitter [256, 340].
    "charades_slowfast_16x8": _KINETICS.replace(
        num_frames=64, alpha=4, train_jitter_scales=(256, 340), multi_label=True, num_classes=157,
        temporal_sampling="charades",
    ),
    # The embedded synthetic dataset (python -m slowfast_tf.data.synthetic): 64x64 videos at
    # 30 fps. 16 fast frames at rate 2 cover ~1.07 s; the slow pathway (alpha 4) sees 4 frames
    # ~0.34 s apart, which aliases the fast classes on purpose (see synthetic.py).
    "synthetic_slowfast": DataConfig(
        num_frames=16, sampling_rate=2, alpha=4, train_crop=56, test_crop=64,
        train_jitter_scales=(64, 72), num_clips=3, num_crops=1, num_classes=6,
    ),
    # Slow-only baseline on the synthetic set: the same 4 frames the slow pathway sees.
    "synthetic_slow": DataConfig(
        num_frames=4, sampling_rate=8, pathways=("slow",), train_crop=56, test_crop=64,
        train_jitter_scales=(64, 72), num_clips=3, num_crops=1, num_classes=6,
    ),
    # R(2+1)D paper family (VMZ recipe): 16 consecutive frames, short side 128, 112 crops,
    # 10 clips x 1 centre crop at test time.
    "r2plus1d_16x1": _R2PLUS1D,
    # torchvision's Kinetics weights were trained with its own mean/std.
    "r2plus1d_torchvision_16x1": _R2PLUS1D.replace(
        mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989)
    ),
}
# Model presets of the R(2+1)D family: r2d_r18, mc3_r34, r2plus1d_r18_torchvision, ...
_R2PLUS1D_MODEL = re.compile(r"^(?:r2d|fr2d|r3d|r?mc\d|r2plus1d)_r\d+(_torchvision)?$")


def get_data_config(name: str, **overrides) -> DataConfig:
    """Returns a data preset, optionally with fields overridden.

    Model preset names are accepted too: the depth part is dropped, so ``"slowfast_r50_8x8"`` and
    ``"slowfast_r101_16x8"`` resolve to ``"slowfast_8x8"`` / ``"slowfast_16x8"``.

    Args:
        name: str, a key of `DATA_PRESETS` or a model preset name.
        **overrides: DataConfig fields to replace (e.g. ``num_classes=10``).

    Returns:
        DataConfig.
    """
    key = name
    match = _R2PLUS1D_MODEL.match(name)
    if match:
        key = "r2plus1d_torchvision_16x1" if match.group(1) else "r2plus1d_16x1"
    if key not in DATA_PRESETS:
        key = re.sub(r"_r\d+(?:_\d+)*(?=_\d+x\d+)", "", name)  # slowfast_r101_50_50_16x8 -> slowfast_16x8
        key = re.sub(r"_nln", "", key)  # non-local models sample like their plain twins
    if key not in DATA_PRESETS:
        raise ValueError(
            f"Unknown data preset. Expected one of {sorted(DATA_PRESETS)}. Received: name={name!r}"
        )
    config = DATA_PRESETS[key]
    return config.replace(**overrides) if overrides else config
