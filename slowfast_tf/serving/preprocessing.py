"""Test-time preprocessing inside the serving signatures: the data layer's test view, called.

Serving computes what offline evaluation computes because it calls the same functions (nothing is
restated here):

* `serve_examples`: a serialized SequenceExample goes through `parse_sequence_example` and
  `preprocess_test_view` -- the single-view (1 clip x 1 crop) test path of
  `build_dataset(mode="test")`: PySlowFast temporal window from the record's fps, then
  `spatial_test_view`.
* `serving_default`: the client already picked a clip, so it is only resampled to the model's T
  with `torch_linspace` (PySlowFast/PyTorchVideo uniform temporal subsampling), then goes through
  the same `spatial_test_view` (short side -> `ClipSpec.short_side`, centre crop of `test_crop`,
  normalise, PackPathway). A test checks the two paths give equal inputs.

Reference: PySlowFast `slowfast/datasets/{decoder,utils,transform}.py`, REFERENCE_SPEC §3.
"""

from __future__ import annotations

import tensorflow as tf

from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.data import (
    DataConfig,
    parse_sequence_example,
    preprocess_test_view,
    spatial_test_view,
    transforms,
)


def serving_data_config(spec: ClipSpec) -> DataConfig:
    """The `DataConfig` whose single test view (1 clip, 1 crop) is the serving view of `spec`."""
    return DataConfig.from_clip_spec(spec, random_flip=False, num_clips=1, num_crops=1)


def temporal_subsample(frames: tf.Tensor, num_frames: int) -> tf.Tensor:
    """`num_frames` frames of a `[T, H, W, C]` clip at `linspace(0, T - 1, num_frames)` (truncated).

    Uses the data layer's float32 `torch_linspace`, which reproduces torch's index rounding;
    `tf.linspace` inside a graph returns e.g. 4.9999995 for 5 and truncates to the wrong frame
    (measured: `[0 1 2 3 4 4 6 7]` for T = num_frames = 8). A short clip repeats frames.
    """
    n = tf.shape(frames)[0]
    index = transforms.torch_linspace(0.0, tf.cast(n - 1, tf.float32), num_frames)
    index = tf.clip_by_value(index, 0.0, tf.cast(tf.maximum(n - 1, 0), tf.float32))
    return tf.gather(frames, tf.cast(tf.floor(index), tf.int32), axis=0)


def preprocess_frames(frames: tf.Tensor, spec: ClipSpec) -> dict[str, tf.Tensor]:
    """uint8 `[T_in, H, W, 3]` (any T_in, H, W) -> `{pathway: float32 [T_p, crop, crop, 3]}`.

    Args:
        frames: one clip of RGB frames as sent by a client.
        spec: the model's `ClipSpec`.

    Returns:
        Model inputs keyed by pathway, as `preprocess_test_view` returns them.
    """
    frames = temporal_subsample(frames, spec.num_frames)
    return spatial_test_view(frames, spec)


def preprocess_example(serialized: tf.Tensor, config: DataConfig) -> dict[str, tf.Tensor]:
    """One serialized SequenceExample -> model inputs, via the data layer's test view 0.

    Args:
        serialized: a scalar string tensor.
        config: `serving_data_config(spec)`.
    """
    parsed = parse_sequence_example(serialized)
    tf.debugging.assert_positive(
        tf.size(parsed["frames"]),
        message="SequenceExample has no frames in the feature list 'image/encoded'",
    )
    inputs, _ = preprocess_test_view(parsed, 0, config)
    return inputs
