"""Test-time preprocessing inside the serving signatures, built from the data layer's ops.

Serving must compute what offline evaluation computes, so every numeric step comes from
`slowfast_tf.data` (nothing is re-implemented here):

* `serve_examples`: a serialized SequenceExample goes through `parse_sequence_example` and
  `preprocess_test_view` -- the exact single-view (1 clip x 1 crop) test path of
  `build_dataset(mode="test")`: PySlowFast temporal window from the record's fps, short side ->
  `short_side`, center crop, normalise, PackPathway.
* `serving_default`: the client already picked a clip, so it is only resampled to the model's T
  with `torch_linspace` (PySlowFast/PyTorchVideo uniform temporal subsampling), then the same
  `resize_short_side` -> `uniform_crop(.., 1)` -> `normalize` -> `pack_pathways` calls as
  `preprocess_test_view` with one crop.

Reference: PySlowFast `slowfast/datasets/{decoder,utils,transform}.py`, REFERENCE_SPEC §3.
"""

from __future__ import annotations

import tensorflow as tf

from slowfast_tf.data import DataConfig, parse_sequence_example, preprocess_test_view, transforms


def test_data_config(
    *,
    num_frames: int,
    alpha: int,
    pathways: tuple[str, ...],
    short_side: int,
    crop_size: int,
    sampling_rate: int,
    target_fps: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> DataConfig:
    """The `DataConfig` whose single test view (1 clip, 1 crop) is the serving view.

    With `num_crops=1` the data layer resizes the short side to `train_jitter_scales[0]` and
    center-crops `test_crop` (PySlowFast `kinetics.py`), so those carry `short_side` / `crop_size`.
    """
    return DataConfig(
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        target_fps=target_fps,
        alpha=alpha,
        pathways=tuple(pathways),
        train_crop=crop_size,
        test_crop=crop_size,
        train_jitter_scales=(short_side, short_side),
        random_flip=False,
        num_clips=1,
        num_crops=1,
        mean=tuple(mean),
        std=tuple(std),
    )


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


def preprocess_frames(frames: tf.Tensor, config: DataConfig) -> dict[str, tf.Tensor]:
    """uint8 `[T_in, H, W, 3]` (any T_in, H, W) -> `{pathway: float32 [T_p, crop, crop, 3]}`.

    Args:
        frames: one clip of RGB frames as sent by a client.
        config: from `test_data_config`.

    Returns:
        Model inputs keyed by pathway, as `preprocess_test_view` returns them.
    """
    frames = temporal_subsample(frames, config.num_frames)
    # Same calls, same order as preprocess_test_view(num_crops=1) in the data layer.
    frames = transforms.resize_short_side(frames, config.train_jitter_scales[0])
    frames = transforms.uniform_crop(frames, config.test_crop, 1)
    frames = transforms.normalize(frames, config.mean, config.std)
    frames = tf.ensure_shape(frames, [config.num_frames, config.test_crop, config.test_crop, 3])
    return transforms.pack_pathways(frames, config.alpha, config.pathways)


def preprocess_example(serialized: tf.Tensor, config: DataConfig) -> dict[str, tf.Tensor]:
    """One serialized SequenceExample -> model inputs, via the data layer's test view 0."""
    parsed = parse_sequence_example(serialized)
    tf.debugging.assert_positive(
        tf.size(parsed["frames"]),
        message="SequenceExample has no frames in the feature list 'image/encoded'",
    )
    inputs, _ = preprocess_test_view(parsed, 0, config)
    return inputs
