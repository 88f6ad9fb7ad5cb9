"""`ClipSpec`: the one owner of every clip setting (frames, sampling, crops, short side, mean/std).

A model wants its input a certain way: how many frames, how far apart, at which frame rate, how
large, normalised how. Those settings live here and nowhere else. Model presets *name* a spec
(`SlowFastPreset.clip_spec`), the data layer's `DataConfig` extends it with the dataset and
evaluation settings, the serving graph (`ServingConfig`) holds one, and every artefact carries it:

* ``model.keras``: a ``clip_spec`` dict in the model's ``get_config`` (``keras.saving.load_model``
  brings it back as ``model.clip_spec``);
* ``X.weights.h5``: a sidecar ``X.clip_spec.json`` (`sidecar_path`), written by
  ``python -m slowfast_tf.convert`` and ``train.py``;
* a SavedModel: ``assets/clip_spec.json`` plus the ``metadata`` signature, whose ``clip_spec``
  output is this JSON (see ``slowfast_tf/serving/signatures.py``).

Export, the serving client and ``predict`` read it from there; their flags only override it.

Frame-count convention (PySlowFast's): ``num_frames`` and ``sampling_rate`` describe the clip
that is *decoded*; for a two-pathway model that is the **fast** pathway (``T_f = num_frames``) and
the slow pathway gets ``num_frames // alpha`` of those frames. A single-pathway model (Slow-only,
C2D, I3D, Fast-only, R(2+1)D) gets all ``num_frames`` at its own ``sampling_rate``; ``alpha`` is
then unused (PySlowFast's Slow 8x8 is ``num_frames=8, sampling_rate=8``).

This module is plain Python (no TensorFlow, no Keras), so model code may import it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

VALID_PATHWAYS = (("slow", "fast"), ("slow",), ("fast",))
WEIGHTS_SUFFIX = ".weights.h5"
SIDECAR_SUFFIX = ".clip_spec.json"
ASSET_NAME = "clip_spec.json"  # SavedModel: assets/clip_spec.json


@dataclass(frozen=True)
class ClipSpec:
    """How a model wants its clips (PySlowFast config names in brackets).

    Args:
        num_frames: int, frames of the decoded clip [DATA.NUM_FRAMES]; the fast pathway's T.
        sampling_rate: int, stride between the clip's frames at `target_fps`
            [DATA.SAMPLING_RATE]; 1 = consecutive frames (R(2+1)D).
        target_fps: float, the frame rate `sampling_rate` refers to [DATA.TARGET_FPS]; a video at
            another fps gets a proportionally wider or narrower window.
        alpha: int, fast/slow frame-rate ratio [SLOWFAST.ALPHA]; only used with two pathways.
        pathways: tuple[str, ...], model input keys: ``("slow", "fast")``, ``("slow",)`` or
            ``("fast",)``.
        train_crop: int, train crop side [DATA.TRAIN_CROP_SIZE].
        test_crop: int, test crop side [DATA.TEST_CROP_SIZE].
        test_short_side: int or None, short side the single-crop test view (evaluation with
            1 crop, serving, ``predict``) resizes to before its centre crop of `test_crop`.
            None follows PySlowFast ``kinetics.py``: ``train_jitter_scales[0]``. Read the
            resolved value from `short_side`. (A 3-crop test resizes to `test_crop`, as there.)
        train_jitter_scales: tuple[int, int], short-side range of the train scale jitter
            [DATA.TRAIN_JITTER_SCALES].
        mean: tuple of 3 floats, RGB mean in [0, 1] units [DATA.MEAN].
        std: tuple of 3 floats, RGB std in [0, 1] units [DATA.STD].
    """

    num_frames: int = 32
    sampling_rate: int = 2
    target_fps: float = 30.0
    alpha: int = 4
    pathways: tuple[str, ...] = ("slow", "fast")
    train_crop: int = 224
    test_crop: int = 256
    test_short_side: int | None = None
    train_jitter_scales: tuple[int, int] = (256, 320)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    def __post_init__(self):
        pathways = tuple(self.pathways)
        object.__setattr__(self, "pathways", pathways)
        object.__setattr__(self, "train_jitter_scales", tuple(self.train_jitter_scales))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "target_fps", float(self.target_fps))
        if pathways not in VALID_PATHWAYS:
            raise ValueError(
                f"pathways must be one of {VALID_PATHWAYS}. Received: pathways={pathways}"
            )
        for name in ("num_frames", "sampling_rate", "alpha", "train_crop", "test_crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
        if self.target_fps <= 0:
            raise ValueError(f"target_fps must be > 0. Received: target_fps={self.target_fps}")
        if pathways == ("slow", "fast") and self.num_frames % self.alpha:
            # The fast->slow lateral conv has temporal stride alpha, so T_f must be a multiple of
            # alpha or the lateral concat fails (PySlowFast #620, pytorchvideo #27).
            raise ValueError(
                "With two pathways num_frames must be a multiple of alpha. "
                f"Received: num_frames={self.num_frames}, alpha={self.alpha}"
            )
        jitter = self.train_jitter_scales
        if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
            raise ValueError(
                "train_jitter_scales must be (min, max) with 0 < min <= max. "
                f"Received: train_jitter_scales={jitter}"
            )
        if jitter[0] < self.train_crop:
            raise ValueError(
                "The smallest jitter scale must be at least train_crop. "
                f"Received: train_jitter_scales={jitter}, train_crop={self.train_crop}"
            )
        if self.test_short_side is not None:
            side = self.test_short_side
            if isinstance(side, bool) or not isinstance(side, int) or side < self.test_crop:
                raise ValueError(
                    "test_short_side must be an int >= test_crop (or None). "
                    f"Received: test_short_side={side!r}, test_crop={self.test_crop}"
                )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need 3 values, std > 0. Received: mean={self.mean}, std={self.std}"
            )

    @property
    def short_side(self) -> int:
        """The resolved `test_short_side`: what the single-crop test view resizes to."""
        if self.test_short_side is not None:
            return self.test_short_side
        return self.train_jitter_scales[0]

    @property
    def clip_spec(self) -> ClipSpec:
        """The plain `ClipSpec` of this object (itself, or the clip part of a subclass)."""
        return ClipSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ClipSpec)})

    def frames_per_pathway(self) -> dict[str, int]:
        """Frames each model input key receives, e.g. ``{"slow": 8, "fast": 32}``."""
        if self.pathways == ("slow", "fast"):
            return {"slow": self.num_frames // self.alpha, "fast": self.num_frames}
        return {self.pathways[0]: self.num_frames}

    def replace(self, **changes):
        """Returns a copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict) -> ClipSpec:
        """The inverse of `to_dict`; unknown keys are an error that names them."""
        if not isinstance(values, dict):
            raise ValueError(f"A clip spec must be a dict. Received: {values!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"Unknown clip spec fields {unknown}; expected some of {sorted(names)}. "
                f"Received: {values}"
            )
        return cls(**values)

    def to_json(self) -> str:
        """`to_dict` as sorted, indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClipSpec:
        """The inverse of `to_json`."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"A clip spec must be JSON ({e}). Received: {text[:200]!r}") from e
        return cls.from_dict(values)

    def save(self, path: str) -> str:
        """Writes `to_json` to `path` atomically; returns `path`."""
        from slowfast_tf.utils import fileio

        fileio.atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str) -> ClipSpec:
        """Reads a file written by `save` (one-line `ValueError` for a bad file)."""
        from slowfast_tf.utils import fileio

        if fileio.is_remote(path):
            import tensorflow as tf

            with tf.io.gfile.GFile(path) as f:
                text = f.read()
        else:
            with open(path) as f:
                text = f.read()
        try:
            return cls.from_json(text)
        except (ValueError, TypeError) as e:
            raise ValueError(f"Bad clip spec file {path!r}: {e}") from e

    def override(self, **values):
        """`replace` with the values that are not None (flags left unset do not override)."""
        changes = {k: v for k, v in values.items() if v is not None}
        return self.replace(**changes) if changes else self


def sidecar_path(weights_path: str) -> str:
    """The clip spec file next to a weights file: ``X.weights.h5`` -> ``X.clip_spec.json``.

    Any other name gets the suffix appended (``X.h5`` -> ``X.h5.clip_spec.json``).
    """
    path = str(weights_path)
    if path.endswith(WEIGHTS_SUFFIX):
        path = path[: -len(WEIGHTS_SUFFIX)]
    return path + SIDECAR_SUFFIX


def load_sidecar(weights_path: str) -> ClipSpec | None:
    """The `ClipSpec` saved next to `weights_path`, or None when there is no sidecar."""
    path = sidecar_path(weights_path)
    if "://" in path:
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            return None
    elif not os.path.exists(path):
        return None
    return ClipSpec.load(path)


def from_model(model) -> ClipSpec | None:
    """The clip spec a Keras model carries (``model.clip_spec``, a dict), or None."""
    values = getattr(model, "clip_spec", None)
    if values is None:
        return None
    if isinstance(values, ClipSpec):
        return values.clip_spec
    return ClipSpec.from_dict(dict(values))


_KINETICS = ClipSpec()  # PySlowFast configs/Kinetics: fast 32 frames x rate 2, 224 / 256 crops.
_SLOW_8X8 = _KINETICS.replace(num_frames=8, sampling_rate=8, pathways=("slow",))
_R2PLUS1D = ClipSpec(
    num_frames=16, sampling_rate=1, pathways=("slow",), train_crop=112, test_crop=112,
    train_jitter_scales=(128, 128), test_short_side=128,
)
# AVA (PySlowFast configs/AVA): the test view is the whole frame at short side `test_short_side`
# (no crop; `test_crop` is set equal to it).
_AVA = ClipSpec(test_crop=224, test_short_side=224)

CLIP_SPECS: MappingProxyType[str, ClipSpec] = MappingProxyType({
    # Kinetics-400 (PySlowFast configs/Kinetics/*.yaml): every SlowFast decodes 32 (16x8: 64)
    # frames at rate 2; alpha is the fast/slow ratio.
    "slowfast_8x8": _KINETICS,
    "slowfast_4x16": _KINETICS.replace(alpha=8),
    "slowfast_16x8": _KINETICS.replace(num_frames=64),
    "slow_8x8": _SLOW_8X8,
    "slow_4x16": _KINETICS.replace(num_frames=4, sampling_rate=16, pathways=("slow",)),
    "fast_32x2": _KINETICS.replace(pathways=("fast",)),
    "c2d_8x8": _SLOW_8X8,
    "i3d_8x8": _SLOW_8X8,
    # Charades SLOWFAST_16x8_R50: jitter [256, 340].
    "charades_slowfast_16x8": _KINETICS.replace(num_frames=64, train_jitter_scales=(256, 340)),
    # The embedded synthetic dataset (python -m slowfast_tf.data.synthetic): 64x64 videos at 30
    # fps. 16 fast frames at rate 2 cover ~1.07 s; the slow pathway (alpha 4) sees 4 frames.
    "synthetic_slowfast": ClipSpec(
        num_frames=16, sampling_rate=2, alpha=4, train_crop=56, test_crop=64,
        train_jitter_scales=(64, 72),
    ),
    # Slow-only baseline on the synthetic set: the same 4 frames the slow pathway sees.
    "synthetic_slow": ClipSpec(
        num_frames=4, sampling_rate=8, pathways=("slow",), train_crop=56, test_crop=64,
        train_jitter_scales=(64, 72),
    ),
    # R(2+1)D paper family (VMZ recipe): 16 consecutive frames, short side 128, 112 crops.
    "r2plus1d_16x1": _R2PLUS1D,
    # torchvision's Kinetics weights were trained with its own mean/std.
    "r2plus1d_torchvision_16x1": _R2PLUS1D.replace(
        mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989)
    ),
    # AVA SLOWFAST_32x2_R50_SHORT: 32x2, jitter [256, 320], crop 224, test short side 224.
    "ava_slowfast_32x2": _AVA,
    # AVA c2/SLOWFAST_32x2_R101_50_50 (the released model): test short side 256.
    "ava_slowfast_32x2_c2": _AVA.replace(test_crop=256, test_short_side=256),
    # AVA SLOW_4x16: 4 frames at rate 16 (test short side 224, as the AVA data pipeline had it;
    # the detector preset used to say 256).
    "ava_slow_4x16": _AVA.replace(num_frames=4, sampling_rate=16, alpha=1, pathways=("slow",)),
    # The synthetic AVA set on CPU: 16x2 at 48x64 source, 32 crop.
    "ava_synthetic": ClipSpec(
        num_frames=16, sampling_rate=2, train_jitter_scales=(32, 40), train_crop=32,
        test_crop=32, test_short_side=32,
    ),
})


def get_clip_spec(name: str, **overrides) -> ClipSpec:
    """Returns the named clip spec (a key of `CLIP_SPECS`), optionally with fields replaced."""
    if name not in CLIP_SPECS:
        raise ValueError(
            f"Unknown clip spec. Expected one of {sorted(CLIP_SPECS)}. Received: name={name!r}"
        )
    spec = CLIP_SPECS[name]
    return spec.replace(**overrides) if overrides else spec
