"""Test-time preprocessing used inside the serving signatures.

The serving graph must compute exactly what offline evaluation computes, so the numeric steps
(short-side resize, center crop, normalisation, pathway packing) come from the data layer
(`slowfast_tf.data`) whenever it provides them. This module only adds what is specific to
serving: sampling a client-supplied clip of arbitrary length to the model's `T`, and decoding a
serialized `SequenceExample` without a `tf.data` pipeline around it.

Reference (PySlowFast `slowfast/datasets/utils.py`, `transform.py`, REFERENCE_SPEC §3):
short side -> `short_side` (bilinear, `align_corners=False`), center crop `crop_size` with offset
`ceil((L - crop) / 2)`, `(x / 255 - 0.45) / 0.225`, then slow = `frames[linspace(0, T-1, T // alpha)]`.
"""

from __future__ import annotations

import tensorflow as tf

# Kinetics mean / std used by every PySlowFast config (DATA.MEAN / DATA.STD, RGB, 0-1 range).
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)

# SequenceExample feature-list key holding one JPEG per frame (docs/DESIGN.md, TF Model Garden).
IMAGE_KEY = "image/encoded"


def linspace_indices(num_in: tf.Tensor, num_out: int) -> tf.Tensor:
    """`linspace(0, num_in - 1, num_out)` truncated to int32, as `torch.linspace(...).long()`.

    Args:
        num_in: scalar int tensor, the number of available frames (>= 1).
        num_out: int, the number of indices to return.

    Returns:
        int32 `[num_out]` indices; the first and the last frame are always included.
    """
    # Exact integer arithmetic, floor(i * (n - 1) / (num_out - 1)): `tf.linspace` inside a graph
    # returns e.g. 4.9999995 for 5.0 (measured: [0 1 2 3 4 4 6 7] for n = num_out = 8), which
    # truncates to the wrong frame.
    if num_out == 1:
        return tf.zeros([1], tf.int32)
    i = tf.range(num_out, dtype=tf.int64)
    idx = (i * tf.cast(num_in - 1, tf.int64)) // (num_out - 1)
    return tf.cast(idx, tf.int32)


def temporal_subsample(frames: tf.Tensor, num_frames: int) -> tf.Tensor:
    """Uniformly sample `num_frames` frames of a `[T, H, W, C]` clip (repeats frames if T is short)."""
    idx = linspace_indices(tf.shape(frames)[0], num_frames)
    return tf.gather(frames, idx, axis=0)


def _fallback_resize_short_side(frames: tf.Tensor, size: int) -> tf.Tensor:
    shape = tf.shape(frames)
    h, w = shape[-3], shape[-2]
    # PySlowFast `transform.scale`: the long side is floor(long / short * size).
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    new_h = tf.where(h <= w, size, tf.cast(tf.floor(hf / wf * size), tf.int32))
    new_w = tf.where(h <= w, tf.cast(tf.floor(wf / hf * size), tf.int32), size)
    # bilinear + half-pixel centers without antialiasing == torch interpolate(align_corners=False).
    return tf.image.resize(
        tf.cast(frames, tf.float32), tf.stack([new_h, new_w]), method="bilinear", antialias=False
    )


def _fallback_center_crop(frames: tf.Tensor, size: int) -> tf.Tensor:
    shape = tf.shape(frames)
    h, w = shape[-3], shape[-2]
    # ceil((L - size) / 2), as PySlowFast `uniform_crop` with spatial_idx = 1.
    y0 = (h - size + 1) // 2
    x0 = (w - size + 1) // 2
    out = frames[..., y0 : y0 + size, x0 : x0 + size, :]
    return tf.ensure_shape(out, [None, size, size, None])


def _fallback_normalize(frames: tf.Tensor) -> tf.Tensor:
    x = tf.cast(frames, tf.float32) / 255.0
    return (x - tf.constant(MEAN)) / tf.constant(STD)


def _fallback_pack_pathways(frames: tf.Tensor, alpha: int, pathways=("slow", "fast")) -> dict:
    if "fast" not in pathways:
        return {"slow": frames}
    if "slow" not in pathways:
        return {"fast": frames}
    t = frames.shape[0]
    slow_idx = linspace_indices(tf.shape(frames)[0], t // alpha)
    return {"slow": tf.gather(frames, slow_idx, axis=0), "fast": frames}


def eval_preprocess_clip(
    frames: tf.Tensor,
    *,
    num_frames: int,
    short_side: int,
    crop_size: int,
    alpha: int,
    pathways: tuple[str, ...],
) -> dict[str, tf.Tensor]:
    """uint8 `[T_in, H, W, 3]` -> model inputs `{pathway: float32 [T_p, crop, crop, 3]}`.

    Args:
        frames: uint8 `[T_in, H, W, 3]` RGB frames, any `T_in >= 1` and frame size.
        num_frames: clip length the model expects before packing (the fast T for SlowFast).
        short_side: the short side is resized to this (PySlowFast test: 256).
        crop_size: side of the center crop (PySlowFast TEST_CROP_SIZE: 256).
        alpha: frame-rate ratio between the fast and the slow pathway.
        pathways: the model's input keys, e.g. `("slow", "fast")`.

    Returns:
        dict keyed by pathway, ready for `model(inputs)`.
    """
    frames = temporal_subsample(frames, num_frames)
    frames = tf.ensure_shape(frames, [num_frames, None, None, 3])
    # Resize, crop, normalise in float: bilinear resizing commutes with the affine normalisation,
    # so the order only changes rounding (PySlowFast normalises first, REFERENCE_SPEC §3).
    frames = _resize_short_side(frames, short_side)
    frames = _center_crop(frames, crop_size)
    frames = _normalize(frames)
    frames = tf.ensure_shape(frames, [num_frames, crop_size, crop_size, 3])
    return _pack_pathways(frames, alpha, tuple(pathways))


def decode_sequence_example(serialized: tf.Tensor) -> tf.Tensor:
    """One serialized `tf.train.SequenceExample` -> uint8 `[T, H, W, 3]` (one JPEG per frame)."""
    _, sequence = tf.io.parse_single_sequence_example(
        serialized,
        sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)},
    )
    jpegs = sequence[IMAGE_KEY]
    tf.debugging.assert_positive(
        tf.size(jpegs), message=f"SequenceExample has no frames in feature list '{IMAGE_KEY}'"
    )
    return tf.map_fn(
        lambda b: tf.io.decode_jpeg(b, channels=3),
        jpegs,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )


# The data layer owns these steps; the fallbacks above are only used until it provides them.
_resize_short_side = _fallback_resize_short_side
_center_crop = _fallback_center_crop
_normalize = _fallback_normalize
_pack_pathways = _fallback_pack_pathways
