"""Pure TF video ops: temporal sampling, spatial augmentation, normalisation, pathway packing.

Every op takes and returns tensors, has no Python side effects and works both eagerly and inside
``tf.data.Dataset.map`` (the tests run each op both ways, big_vision ``tfrun`` style). A clip is
``[T, H, W, 3]`` channels-last. Numerics follow PySlowFast ``slowfast/datasets/{decoder,utils,
transform}.py``; the comments name the reference function each op reproduces.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def temporal_sample_indices(
    num_video_frames: tf.Tensor,
    num_frames: int,
    clip_size: tf.Tensor,
    clip_idx: tf.Tensor | int = -1,
    num_clips: int = 1,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """Frame indices of one clip (PySlowFast ``decoder.get_start_end_idx`` + ``temporal_sampling``).

    ``delta = max(n - clip_size, 0)``. Training (``clip_idx=-1``): ``start ~ U(0, delta)``.
    Test: ``start = delta * clip_idx / num_clips``, so the last of 10 clips starts at 0.9 * delta
    and no clip is centred, exactly as the reference. Indices are
    ``linspace(start, start + clip_size - 1, num_frames)`` clamped to ``[0, n - 1]`` and truncated
    to int, so short videos repeat frames rather than fail.

    Args:
        num_video_frames: int scalar tensor, frames in the video (n).
        num_frames: int, frames to sample.
        clip_size: float scalar tensor, window length in native frames
            (``sampling_rate * num_frames / target_fps * video_fps``).
        clip_idx: int or int scalar tensor, -1 for a random window, else the test clip index.
        num_clips: int, test clips per video.
        seed: optional int32 ``[2]`` tensor for ``tf.random.stateless_uniform``; None uses the
            global (stateful) generator.

    Returns:
        int32 ``[num_frames]`` tensor.
    """
    n = tf.cast(num_video_frames, tf.float32)
    clip_size = tf.cast(clip_size, tf.float32)
    delta = tf.maximum(n - clip_size, 0.0)
    clip_idx = tf.cast(clip_idx, tf.float32)
    if seed is None:
        u = tf.random.uniform([], 0.0, 1.0)
    else:
        u = tf.random.stateless_uniform([], seed=seed, minval=0.0, maxval=1.0)
    start = tf.where(clip_idx < 0, u * delta, delta * clip_idx / float(num_clips))
    end = start + clip_size - 1.0
    index = torch_linspace(start, end, num_frames)
    index = tf.clip_by_value(index, 0.0, tf.maximum(n - 1.0, 0.0))
    # torch .long() truncates toward zero; indices are >= 0 here so floor == truncation.
    return tf.cast(tf.floor(index), tf.int32)


def charades_sample_indices(
    num_video_frames: tf.Tensor,
    num_frames: int,
    sampling_rate: int,
    clip_idx: tf.Tensor | int = -1,
    num_clips: int = 1,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """Frame indices of one Charades clip (PySlowFast ``charades.py`` ``get_seq_frames``).

    The window is ``clip = (num_frames - 1) * sampling_rate + 1`` consecutive native frames (no
    fps resampling). Training: ``start`` is a uniform integer in ``[0, L - clip]``, or in
    ``[L - clip, 0]`` when the video is shorter. Test: ``start = round(k * max(L - clip, 0) /
    (num_clips - 1))`` (half to even, as Python's ``round``), so the first and last clips touch
    the video's ends; one clip starts at 0. Indices ``start + i * sampling_rate`` are clamped to
    ``[0, L - 1]``.

    Returns:
        int32 ``[num_frames]`` tensor.
    """
    n = tf.cast(num_video_frames, tf.int32)
    clip = (num_frames - 1) * sampling_rate + 1
    lo, hi = tf.minimum(n - clip, 0), tf.maximum(n - clip, 0)
    if seed is None:
        rand = tf.random.uniform([], lo, hi + 1, dtype=tf.int32)
    else:
        rand = tf.random.stateless_uniform([], seed=seed, minval=lo, maxval=hi + 1, dtype=tf.int32)
    gap = tf.cast(hi, tf.float64) / float(max(num_clips - 1, 1))
    test_start = tf.cast(tf.round(gap * tf.cast(clip_idx, tf.float64)), tf.int32)
    start = tf.where(tf.cast(clip_idx, tf.int32) < 0, rand, test_start)
    index = start + tf.range(num_frames, dtype=tf.int32) * sampling_rate
    return tf.clip_by_value(index, 0, tf.maximum(n - 1, 0))


def window_label_union(frame_labels: tf.Tensor, indices: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Multi-hot float32 ``[num_classes]``: union of the per-frame label sets of frames
    ``indices[0] .. indices[-1]`` (inclusive, PySlowFast ``aggregate_labels`` over the window).

    Args:
        frame_labels: int64 ``[N, K]`` per-frame labels padded with -1.
        indices: int32 ``[T]`` sampled frame indices (ascending).
        num_classes: int.
    """
    rows = frame_labels[indices[0] : indices[-1] + 1]
    labels = tf.reshape(rows, [-1])
    labels = tf.cast(tf.boolean_mask(labels, labels >= 0), tf.int32)
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    return tf.reduce_max(tf.concat([one_hot, tf.zeros([1, num_classes])], 0), axis=0)


def clip_size_in_frames(
    video_fps: tf.Tensor, num_frames: int, sampling_rate: int, target_fps: float
) -> tf.Tensor:
    """Native-frame window ``sampling_rate * num_frames / target_fps * fps`` (float32 scalar).

    A record without fps (0) is assumed to be at `target_fps`.
    """
    fps = tf.cast(video_fps, tf.float32)
    fps = tf.where(fps > 0.0, fps, float(target_fps))
    return float(sampling_rate * num_frames) / float(target_fps) * fps


def decode_frames(encoded: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Decodes only the sampled JPEGs: gathers ``encoded[indices]`` then decodes.

    Repeated indices (short videos, clamped windows) are decoded once and gathered back.

    Args:
        encoded: tf.string ``[N]``, one JPEG per frame.
        indices: int ``[T]``.

    Returns:
        uint8 ``[T, H, W, 3]``.
    """
    unique, position = tf.unique(tf.cast(indices, tf.int32))
    picked = tf.gather(encoded, unique)
    frames = tf.map_fn(
        lambda x: tf.io.decode_jpeg(x, channels=3),
        picked,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    return tf.gather(frames, position)


def short_side_size(height: tf.Tensor, width: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Output ``(h, w)`` with short side `size`; the long side is floored (PySlowFast)."""
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    s = tf.cast(size, tf.float32)
    new_h = tf.where(w < h, tf.floor(h / w * s), s)
    new_w = tf.where(w < h, s, tf.floor(w / h * s))
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def resize_short_side(frames: tf.Tensor, size: tf.Tensor | int) -> tf.Tensor:
    """Bilinear resize so the short side equals `size` (``transform.random_short_side_scale_jitter``).

    ``tf.image.resize`` bilinear uses half-pixel centres without antialiasing, which is torch's
    ``interpolate(mode="bilinear", align_corners=False)``.

    Args:
        frames: ``[T, H, W, 3]`` uint8 or float.
        size: target short side.

    Returns:
        float32 ``[T, h, w, 3]`` (values keep the input's range).
    """
    shape = tf.shape(frames)
    new_h, new_w = short_side_size(shape[1], shape[2], size)
    return tf.image.resize(tf.cast(frames, tf.float32), tf.stack([new_h, new_w]), method="bilinear")


def random_short_side_scale(
    frames: tf.Tensor, min_size: int, max_size: int, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """Scale jitter: short side ``round(U(min_size, max_size))`` (PySlowFast train aug)."""
    if seed is None:
        u = tf.random.uniform([], float(min_size), float(max_size))
    else:
        u = tf.random.stateless_uniform([], seed, float(min_size), float(max_size))
    return resize_short_side(frames, tf.cast(tf.round(u), tf.int32))


def random_crop(frames: tf.Tensor, size: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Same random ``size x size`` window for every frame (``transform.random_crop``).

    The offset is uniform in ``[0, H - size)`` like ``np.random.randint(0, H - size)`` (0 when
    ``H == size``).
    """
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    _check_min_size(h, w, size)
    y, x = random_crop_offsets(h, w, size, seed)
    return frames[:, y : y + size, x : x + size, :]


def random_crop_offsets(h, w, size, seed):
    """PySlowFast's ``randint(0, L - size)`` crop offsets ``(y, x)`` (0 when ``L <= size``);
    stateless when ``seed`` is given. Shared by the clip and the AVA frames+boxes crops."""
    maxvals = tf.maximum(tf.stack([h - size, w - size]), 1)
    if seed is None:
        y = tf.random.uniform([], 0, maxvals[0], dtype=tf.int32)
        x = tf.random.uniform([], 0, maxvals[1], dtype=tf.int32)
    else:
        y = tf.random.stateless_uniform([], seed, 0, maxvals[0], dtype=tf.int32)
        x = tf.random.stateless_uniform([], seed + 1, 0, maxvals[1], dtype=tf.int32)
    return y, x


def random_flip(frames: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Horizontal flip of the whole clip with probability 0.5."""
    frames = tf.convert_to_tensor(frames)
    if seed is None:
        u = tf.random.uniform([])
    else:
        u = tf.random.stateless_uniform([], seed)
    return tf.cond(u < 0.5, lambda: flip_width(frames), lambda: frames)


def flip_width(frames: tf.Tensor) -> tf.Tensor:
    """Reverses the width axis (-2) of ``[..., W, C]`` frames.

    Reversing the middle axis of a rank-3 ``[rows, W, C]`` view hits ``ReverseV2``'s row-copy fast
    path; ``tf.reverse(frames, [2])`` on the rank-4 clip walks every element (2.8x slower on a
    32x224x224x3 float clip, one thread). Same values either way.
    """
    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    rows = tf.reshape(frames, tf.stack([tf.reduce_prod(shape[:-2]), shape[-2], shape[-1]]))
    flipped = tf.reshape(tf.reverse(rows, axis=[1]), shape)
    return tf.ensure_shape(flipped, frames.shape)


def uniform_crop(frames: tf.Tensor, size: int, spatial_idx: tf.Tensor | int) -> tf.Tensor:
    """Test crop ``0/1/2`` = left/center/right, or top/center/bottom when H > W (``uniform_crop``).

    The centre offset is ``ceil((L - size) / 2)`` as in the reference.
    """
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    _check_min_size(h, w, size)
    spatial_idx = tf.clip_by_value(tf.cast(spatial_idx, tf.int32), 0, 2)

    def offset(length):
        # 0: start, 1: centre (ceil((L - size) / 2) like the reference), 2: end.
        return tf.gather(tf.stack([0, (length - size + 1) // 2, length - size]), spatial_idx)

    tall = h > w
    y = tf.where(tall, offset(h), (h - size + 1) // 2)
    x = tf.where(tall, (w - size + 1) // 2, offset(w))
    return frames[:, y : y + size, x : x + size, :]


def _check_min_size(h: tf.Tensor, w: tf.Tensor, size: int) -> None:
    tf.debugging.assert_greater_equal(
        tf.minimum(h, w), size, message=f"Frames are smaller than the crop size {size}."
    )


def normalize(frames: tf.Tensor, mean, std) -> tf.Tensor:
    """``(x / 255 - mean) / std`` in float32 (PySlowFast ``tensor_normalize``).

    Computed as one multiply-add ``x * (1 / (255 std)) - mean / std``: on a 32x224x224 clip the
    three separate elementwise passes cost more than the JPEG decoding. The per-channel constants
    are tiled to a whole row (``W * 3`` values) and the clip is viewed as ``[rows, W * 3]``:
    broadcasting a ``[3]`` vector over the innermost axis is Eigen's slow path (5x slower than
    this on one thread); the values are the same.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scale = tf.constant(1.0 / (255.0 * std), tf.float32)
    offset = tf.constant(-mean / std, tf.float32)
    frames = tf.cast(frames, tf.float32)
    if frames.shape.rank is not None and frames.shape.rank < 2:
        return frames * scale + offset
    shape = tf.shape(frames)
    width = shape[-2]
    rows = tf.reshape(frames, tf.stack([tf.reduce_prod(shape[:-2]), width * shape[-1]]))
    out = rows * tf.tile(scale, [width]) + tf.tile(offset, [width])
    return tf.ensure_shape(tf.reshape(out, shape), frames.shape)


def torch_linspace(start: tf.Tensor, end: tf.Tensor, num: int) -> tf.Tensor:
    """float32 ``torch.linspace``: the first half counts up from `start`, the second half down from
    `end`. Truncating these values to int must give torch's indices exactly, and ``tf.linspace``
    rounds differently on some x.5 / integer boundaries.
    """
    start = tf.cast(start, tf.float32)
    end = tf.cast(end, tf.float32)
    if num == 1:
        return tf.reshape(start, [1])
    i = tf.range(num, dtype=tf.float32)
    step = (end - start) / float(num - 1)
    return tf.where(i < num / 2, start + step * i, end - step * (float(num - 1) - i))


def slow_indices(num_frames: int, alpha: int) -> list[int]:
    """Slow-pathway frame indices: ``linspace(0, T-1, T // alpha)`` truncated (NOT ``[::alpha]``).

    T=32, alpha=4 gives ``[0, 4, 8, 13, 17, 22, 26, 31]``: first and last frame always kept.
    """
    t_slow = num_frames // alpha
    if t_slow < 1:
        raise ValueError(
            f"num_frames // alpha must be >= 1. Received: num_frames={num_frames}, alpha={alpha}"
        )
    if t_slow == 1:
        return [0]
    step = np.float32(num_frames - 1) / np.float32(t_slow - 1)
    half = t_slow / 2
    values = [
        np.float32(i) * step if i < half else np.float32(num_frames - 1) - step * np.float32(t_slow - 1 - i)
        for i in range(t_slow)
    ]
    return [int(v) for v in values]


def pack_pathways(
    frames: tf.Tensor, alpha: int, pathways: tuple[str, ...] = ("slow", "fast")
) -> dict[str, tf.Tensor]:
    """Splits a clip into the model's input dict (PySlowFast ``PackPathway``).

    Two pathways: ``fast`` = all T frames, ``slow`` = the `slow_indices` frames (first and last
    always kept). One pathway: the single key gets all T frames (its own sampling rate already
    applied by the sampler).

    Args:
        frames: ``[T, H, W, C]`` (or ``[B, T, H, W, C]``, detected by rank).
        alpha: int, fast/slow frame-rate ratio.
        pathways: tuple of model input keys.

    Returns:
        dict of tensors keyed by pathway.
    """
    if tuple(pathways) != ("slow", "fast"):
        if tuple(pathways) not in (("slow",), ("fast",)):
            raise ValueError(
                "pathways must be ('slow', 'fast'), ('slow',) or ('fast',). "
                f"Received: pathways={pathways}"
            )
        return {pathways[0]: frames}
    frames = tf.convert_to_tensor(frames)
    time_axis = frames.shape.rank - 4
    num_frames = frames.shape[time_axis]
    if num_frames is None:
        raise ValueError("pack_pathways needs a static number of frames. Received: None")
    if num_frames % alpha:
        raise ValueError(
            "The number of frames must be a multiple of alpha. "
            f"Received: num_frames={num_frames}, alpha={alpha}"
        )
    slow = tf.gather(frames, slow_indices(num_frames, alpha), axis=time_axis)
    return {"slow": slow, "fast": frames}
