"""tf.data pipeline for AVA detection: segment records -> one element per keyframe.

``build_ava_dataset(file_pattern, config, mode, batch_size)`` yields

* ``mode="train"``: ``(inputs, labels)``;
* ``mode="val"`` / ``"test"``: ``(inputs, labels, meta)``, ``meta = {"video_id": string [B],
  "sec": int64 [B], "ori_boxes": float32 [B, M, 4]}`` (the boxes before any resize, normalised to
  the original frame, which is what the evaluator and the detections CSV use).

``inputs = {<pathways>: float32 [B, T_p, H, W, 3], "boxes": float32 [B, M, 4], "box_mask":
float32 [B, M]}`` and ``labels`` float32 ``[B, M, num_classes]`` multi-hot (action id ``a`` ->
column ``a - 1``; an unlabelled box is all zeros). ``boxes`` are ``(x1, y1, x2, y2)`` normalised
to the network input (``boxes_to_pixels`` gives PySlowFast's pixel boxes). Padding rows have
zero boxes, zero mask and zero labels. ``M = config.max_boxes``; a keyframe with more boxes
keeps the first ``M`` in first-appearance order (PySlowFast has no cap).

Reference: PySlowFast ``datasets/ava_dataset.py`` (``_images_and_boxes_preprocessing_cv2``) and
``datasets/cv2_transform.py``:

1. clip = frames ``range(c - T*tau/2, c + T*tau/2, tau)`` clamped to the video (``get_sequence``),
   ``c = (sec - time_offset) * fps``;
2. boxes: train = ground truth plus detector boxes with ``score >= detection_score_thresh``
   (labels merged per identical box, first-appearance order), val/test = detector boxes above the
   threshold (or the ground truth with ``test_boxes="groundtruth"``); keyframes left with no box
   are skipped;
3. boxes to pixels, clipped to ``[0, W - 1] x [0, H - 1]``;
4. train: short side ``round(1 / U(1/max, 1/min))`` (inverse-uniform jitter), boxes scaled by the
   long side's ratio; random ``crop x crop`` window (``randint(0, L - crop)``), boxes shifted;
   horizontal flip with p 0.5, ``x -> W - x - 1``; test: short side ``test_size``, full frame;
5. boxes clipped again; frames normalised ``(x / 255 - mean) / std``; PackPathway.

Test frames of different sizes in one batch are padded at the bottom/right (boxes stay exact in
pixels; use batch 1 or equal-size videos to reproduce the reference's unpadded features).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from slowfast_tf.clip_spec import CLIP_SPECS, ClipSpec
from slowfast_tf.data import transforms
from slowfast_tf.data.ava.ava_records import parse_segment_example

MODES = ("train", "val", "test")
AUTOTUNE = tf.data.AUTOTUNE
_AVA_SPEC = CLIP_SPECS["ava_slowfast_32x2"]


@dataclass(frozen=True)
class AvaDataConfig:
    """Clip, augmentation and box settings of AVA detection (PySlowFast ``configs/AVA``).

    Args:
        num_frames: frames of the fast pathway clip (T).
        sampling_rate: native frames between sampled frames (tau).
        alpha: fast/slow frame-rate ratio.
        pathways: model input keys, ``("slow", "fast")`` or one of them.
        train_jitter: ``(min, max)`` short side of the train scale jitter.
        train_crop: train crop side.
        test_size: test short side (full frame, no crop).
        max_boxes: static number of box slots per keyframe.
        num_classes: label columns (80 for AVA).
        detection_score_thresh: detector boxes below this score are dropped.
        train_predicted_boxes: add detector boxes to the train boxes.
        test_boxes: ``"predicted"`` (the reference) or ``"groundtruth"`` (oracle boxes).
        mean, std: per-channel normalisation.
    """

    # Clip defaults: the clip spec "ava_slowfast_32x2" (their one owner, slowfast_tf/clip_spec.py).
    num_frames: int = _AVA_SPEC.num_frames
    sampling_rate: int = _AVA_SPEC.sampling_rate
    alpha: int = _AVA_SPEC.alpha
    pathways: tuple[str, ...] = _AVA_SPEC.pathways
    train_jitter: tuple[int, int] = _AVA_SPEC.train_jitter_scales
    train_crop: int = _AVA_SPEC.train_crop
    test_size: int = _AVA_SPEC.short_side
    max_boxes: int = 32
    num_classes: int = 80
    detection_score_thresh: float = 0.8
    train_predicted_boxes: bool = True
    test_boxes: str = "predicted"
    mean: tuple[float, float, float] = _AVA_SPEC.mean
    std: tuple[float, float, float] = _AVA_SPEC.std

    def __post_init__(self):
        if self.test_boxes not in ("predicted", "groundtruth"):
            raise ValueError("test_boxes must be 'predicted' or 'groundtruth'. "
                             f"Received: {self.test_boxes!r}")
        if self.max_boxes < 1 or self.num_frames % self.alpha and len(self.pathways) == 2:
            raise ValueError("max_boxes must be >= 1 and num_frames a multiple of alpha. "
                             f"Received: max_boxes={self.max_boxes}, num_frames={self.num_frames}, "
                             f"alpha={self.alpha}")

    @property
    def clip_spec(self) -> ClipSpec:
        """The clip settings as a `ClipSpec` (the test view is the whole frame at `test_size`)."""
        return ClipSpec(
            num_frames=self.num_frames, sampling_rate=self.sampling_rate, alpha=self.alpha,
            pathways=tuple(self.pathways), train_crop=self.train_crop, test_crop=self.test_size,
            test_short_side=self.test_size, train_jitter_scales=tuple(self.train_jitter),
            mean=self.mean, std=self.std,
        )


def _from_clip_spec(name: str, **fields) -> AvaDataConfig:
    """The AVA data preset whose clip settings are the clip spec `name` (their one owner)."""
    return config_from_clip_spec(CLIP_SPECS[name], **fields)


def config_from_clip_spec(spec: ClipSpec, **fields) -> AvaDataConfig:
    """An `AvaDataConfig` whose clip settings are `spec`'s (test size: its short side); `fields`
    set the rest (``max_boxes``, ``num_classes``, ...)."""
    return AvaDataConfig(
        num_frames=spec.num_frames, sampling_rate=spec.sampling_rate, alpha=spec.alpha,
        pathways=spec.pathways, train_jitter=spec.train_jitter_scales, train_crop=spec.train_crop,
        test_size=spec.short_side, mean=spec.mean, std=spec.std, **fields,
    )


# Named like the clip specs (and the detector presets' `clip_spec`), see slowfast_tf/clip_spec.py.
AVA_DATA_PRESETS = {
    # SLOWFAST_32x2_R50_SHORT: 32x2, alpha 4, jitter [256, 320], crop 224, test 224, thresh 0.8
    "ava_slowfast_32x2": _from_clip_spec("ava_slowfast_32x2"),
    # c2/SLOWFAST_32x2_R101_50_50 (the released model): test short side 256
    "ava_slowfast_32x2_c2": _from_clip_spec("ava_slowfast_32x2_c2"),
    # SLOW_4x16: 4 frames at rate 16, threshold 0.9
    "ava_slow_4x16": _from_clip_spec("ava_slow_4x16", detection_score_thresh=0.9),
    # the synthetic set on CPU: 16x2 at 48x64 source, 32 crop
    "ava_synthetic": _from_clip_spec("ava_synthetic", max_boxes=4, detection_score_thresh=0.5),
}


# ---------------------------------------------------------------- pure ops (eager and in map)
def clip_indices(center, num_frames: int, sampling_rate: int, video_num_frames) -> tf.Tensor:
    """``range(c - T*tau/2, c + T*tau/2, tau)`` clamped to ``[0, n - 1]`` (``get_sequence``)."""
    half = num_frames * sampling_rate // 2
    center = tf.cast(center, tf.int64)
    idx = center - half + sampling_rate * tf.range(num_frames, dtype=tf.int64)
    return tf.clip_by_value(idx, 0, tf.maximum(tf.cast(video_num_frames, tf.int64) - 1, 0))


def merge_boxes(boxes: tf.Tensor, labels: tf.Tensor, num_classes: int):
    """Rows with identical boxes -> one box with a multi-hot label (first-appearance order).

    Args:
        boxes: float ``[N, 4]``; labels: int ``[N]`` action ids (1-based, -1 = no label).

    Returns:
        ``(boxes [U, 4], multi_hot float32 [U, num_classes])``.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    unique = tf.raw_ops.UniqueV2(x=boxes, axis=[0])
    count = tf.shape(unique.y)[0]
    hot = tf.one_hot(tf.cast(labels, tf.int32) - 1, num_classes, dtype=tf.float32)
    return unique.y, tf.math.unsorted_segment_max(hot, unique.idx, count) * tf.cast(count > 0, tf.float32)


def boxes_to_pixels(boxes: tf.Tensor, height, width) -> tf.Tensor:
    """Normalised ``(x1, y1, x2, y2)`` -> pixels (works on any leading shape)."""
    scale = tf.cast(tf.stack([width, height, width, height]), boxes.dtype)
    return boxes * scale


def pixels_to_boxes(boxes: tf.Tensor, height, width) -> tf.Tensor:
    """Inverse of `boxes_to_pixels`."""
    scale = tf.cast(tf.stack([width, height, width, height]), boxes.dtype)
    return boxes / scale


def clip_boxes_to_image(boxes: tf.Tensor, height, width) -> tf.Tensor:
    """``x`` into ``[0, W - 1]``, ``y`` into ``[0, H - 1]`` (``cv2_transform.clip_boxes_to_image``)."""
    w = tf.cast(width, boxes.dtype) - 1.0
    h = tf.cast(height, boxes.dtype) - 1.0
    upper = tf.stack([w, h, w, h])
    return tf.minimum(upper, tf.maximum(0.0, boxes))


def jitter_size(min_size: int, max_size: int, seed=None) -> tf.Tensor:
    """``int(round(1 / U(1/max, 1/min)))`` (``random_short_side_scale_jitter_list``)."""
    lo, hi = 1.0 / float(max_size), 1.0 / float(min_size)
    if seed is None:
        u = tf.random.uniform([], lo, hi, dtype=tf.float64)
    else:
        u = tf.random.stateless_uniform([], seed, lo, hi, dtype=tf.float64)
    return tf.cast(tf.round(1.0 / u), tf.int32)


def scale_short_side_with_boxes(frames: tf.Tensor, boxes: tf.Tensor, size):
    """Resize so the short side is `size` (long side floored), boxes by the long side's ratio,
    as ``cv2_transform.random_short_side_scale_jitter_list``; unchanged if already at `size`."""
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    size = tf.cast(size, tf.int32)
    hf, wf, sf = (tf.cast(v, tf.float64) for v in (h, w, size))
    tall = w < h
    new_h = tf.where(tall, tf.cast(tf.floor(hf / wf * sf), tf.int32), size)
    new_w = tf.where(tall, size, tf.cast(tf.floor(wf / hf * sf), tf.int32))
    ratio = tf.where(tall, tf.cast(new_h, tf.float64) / hf, tf.cast(new_w, tf.float64) / wf)
    same = tf.logical_or(tf.logical_and(w <= h, tf.equal(w, size)),
                         tf.logical_and(h <= w, tf.equal(h, size)))
    frames = tf.cast(frames, tf.float32)
    out = tf.cond(same, lambda: frames,
                  lambda: tf.image.resize(frames, tf.stack([new_h, new_w]), method="bilinear"))
    boxes = tf.where(same, boxes, tf.cast(tf.cast(boxes, tf.float64) * ratio, boxes.dtype))
    return out, boxes


def random_crop_with_boxes(frames: tf.Tensor, boxes: tf.Tensor, size: int, seed=None):
    """Same ``size x size`` window for all frames, offsets ``randint(0, L - size)`` (0 when
    ``L <= size``), boxes shifted (``random_crop_list`` + ``crop_boxes``)."""
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    tf.debugging.assert_greater_equal(tf.minimum(h, w), size,
                                      message=f"Frames are smaller than the crop size {size}.")
    y, x = transforms.random_crop_offsets(h, w, size, seed)
    shift = tf.cast(tf.stack([x, y, x, y]), boxes.dtype)
    return frames[:, y : y + size, x : x + size, :], boxes - shift


def flip_with_boxes(frames: tf.Tensor, boxes: tf.Tensor, seed=None, flip=None):
    """Horizontal flip with p 0.5; boxes ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``
    (``horizontal_flip_list`` + ``flip_boxes``). `flip` (bool) forces the decision."""
    if flip is None:
        u = tf.random.uniform([]) if seed is None else tf.random.stateless_uniform([], seed)
        flip = u < 0.5
    width = tf.cast(tf.shape(frames)[2], boxes.dtype)
    flipped = tf.stack([width - boxes[:, 2] - 1.0, boxes[:, 1], width - boxes[:, 0] - 1.0,
                        boxes[:, 3]], axis=1)
    return (tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames),
            tf.where(flip, flipped, boxes))


def pad_boxes(boxes: tf.Tensor, labels: tf.Tensor, max_boxes: int):
    """``[N, 4]``, ``[N, C]`` -> ``[M, 4]``, ``[M]`` mask, ``[M, C]`` (first M kept)."""
    n = tf.minimum(tf.shape(boxes)[0], max_boxes)
    pad = max_boxes - n
    boxes = tf.pad(boxes[:n], [[0, pad], [0, 0]])
    labels = tf.pad(labels[:n], [[0, pad], [0, 0]])
    mask = tf.pad(tf.ones([n], tf.float32), [[0, pad]])
    return (tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(mask, [max_boxes]),
            tf.ensure_shape(labels, [max_boxes, labels.shape[-1]]))


# ---------------------------------------------------------------- record -> keyframe elements
def keyframes_of_segment(parsed: dict, config: AvaDataConfig, mode: str) -> tf.data.Dataset:
    """One parsed segment -> a dataset of keyframe elements holding only their clip's JPEGs."""
    fps = tf.cast(parsed["fps"], tf.float64)
    secs = parsed["keyframe_sec"]
    offset_us = tf.cast(secs * 1_000_000 - parsed["start_us"], tf.float64)
    centres = parsed["start_index"] + tf.cast(tf.round(offset_us * fps / 1e6), tf.int64)
    idx = tf.map_fn(
        lambda c: clip_indices(c, config.num_frames, config.sampling_rate, parsed["video_num_frames"]),
        centres)
    local = idx - parsed["start_index"]
    stored = tf.shape(parsed["frames"], out_type=tf.int64)[0]
    message = "a clip reaches outside its segment's frames: convert with a larger --context_frames"
    tf.debugging.assert_less(tf.reduce_max(local), stored, message=message)
    tf.debugging.assert_non_negative(local, message=message)
    count = tf.shape(secs)[0]
    thresh = config.detection_score_thresh
    keep = tf.ragged.map_flat_values(lambda s: s >= thresh, parsed["pred_scores"])
    pred_boxes = tf.ragged.boolean_mask(parsed["pred_boxes"], keep)
    pred_labels = tf.ragged.boolean_mask(parsed["pred_labels"], keep)
    if mode == "train":
        if config.train_predicted_boxes:
            boxes = tf.concat([parsed["gt_boxes"], pred_boxes], axis=1)
            labels = tf.concat([parsed["gt_labels"], pred_labels], axis=1)
        else:
            boxes, labels = parsed["gt_boxes"], parsed["gt_labels"]
    elif config.test_boxes == "groundtruth":
        boxes, labels = parsed["gt_boxes"], parsed["gt_labels"]
    else:
        boxes, labels = pred_boxes, pred_labels
    jpegs = tf.gather(parsed["frames"], local)
    video_id = parsed["video_id"]

    def element(k):
        return {"jpegs": jpegs[k], "video_id": video_id, "sec": secs[k], "boxes": boxes[k],
                "labels": labels[k]}

    # range + map rather than from_tensor_slices: slicing ragged components trips TF's type
    # inference warning on every trace.
    ds = tf.data.Dataset.range(tf.cast(count, tf.int64)).map(element)
    return ds.filter(lambda e: tf.shape(e["boxes"])[0] > 0)


def preprocess_keyframe(element: dict, config: AvaDataConfig, mode: str, seed=None):
    """Decoded, augmented keyframe: frames float ``[T, H, W, 3]`` normalised, boxes in pixels of
    those frames ``[M, 4]``, mask ``[M]``, labels ``[M, C]``, original normalised boxes ``[M, 4]``."""
    frames = transforms.decode_frames(element["jpegs"], tf.range(tf.shape(element["jpegs"])[0]))
    ori_boxes, labels = merge_boxes(element["boxes"], element["labels"], config.num_classes)
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    boxes = clip_boxes_to_image(boxes_to_pixels(ori_boxes, h, w), h, w)
    seeds = [None] * 3 if seed is None else [seed + 10 * k for k in range(3)]
    if mode == "train":
        size = jitter_size(*config.train_jitter, seed=seeds[0])
        frames, boxes = scale_short_side_with_boxes(frames, boxes, size)
        frames, boxes = random_crop_with_boxes(frames, boxes, config.train_crop, seeds[1])
        frames, boxes = flip_with_boxes(frames, boxes, seeds[2])
    else:
        frames, boxes = scale_short_side_with_boxes(frames, boxes, config.test_size)
    shape = tf.shape(frames)
    boxes = clip_boxes_to_image(boxes, shape[1], shape[2])
    frames = transforms.normalize(frames, config.mean, config.std)
    crop = config.train_crop if mode == "train" else None
    frames = tf.ensure_shape(frames, [config.num_frames, crop, crop, 3])
    boxes, mask, labels = pad_boxes(boxes, labels, config.max_boxes)
    ori_boxes, _, _ = pad_boxes(ori_boxes, tf.zeros([tf.shape(ori_boxes)[0], 1]), config.max_boxes)
    return {"frames": frames, "boxes_px": boxes, "box_mask": mask, "labels": labels,
            "ori_boxes": ori_boxes, "video_id": element["video_id"], "sec": element["sec"]}


def finish_batch(batch: dict, config: AvaDataConfig, mode: str):
    """Batched keyframes -> model inputs: pixel boxes normalised to the (padded) batch frames,
    PackPathway."""
    shape = tf.shape(batch["frames"])
    boxes = pixels_to_boxes(batch["boxes_px"], shape[2], shape[3]) * batch["box_mask"][..., None]
    inputs = transforms.pack_pathways(batch["frames"], config.alpha, config.pathways)
    inputs.update(boxes=boxes, box_mask=batch["box_mask"])
    if mode == "train":
        return inputs, batch["labels"]
    meta = {"video_id": batch["video_id"], "sec": batch["sec"], "ori_boxes": batch["ori_boxes"]}
    return inputs, batch["labels"], meta


def build_ava_dataset(
    file_pattern: str | list[str],
    config: AvaDataConfig,
    mode: str,
    batch_size: int,
    shuffle_buffer: int = 256,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Segment shards -> batched ``(inputs, labels[, meta])`` (see module doc)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: {mode!r}")
    files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else list(file_pattern)
    if not files:
        raise ValueError(f"No files match the pattern. Received: file_pattern={file_pattern!r}")
    train = mode == "train"
    ds = tf.data.Dataset.from_tensor_slices(sorted(files))
    if train:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                       num_parallel_calls=AUTOTUNE, deterministic=not train)
    ds = ds.map(parse_segment_example, num_parallel_calls=AUTOTUNE)
    ds = ds.flat_map(lambda p: keyframes_of_segment(p, config, mode))
    if train:
        # Shuffle keyframe elements (each holds only its own clip's JPEGs, not the segment),
        # then repeat: epochs blend without a barrier.
        ds = ds.shuffle(shuffle_buffer, seed=seed).repeat()
    ds = ds.map(lambda e: preprocess_keyframe(e, config, mode), num_parallel_calls=AUTOTUNE,
                deterministic=not train)
    if train:
        ds = ds.batch(batch_size, drop_remainder=True)
    else:
        # Test frames keep each video's aspect ratio: pad to the largest in the batch.
        ds = ds.padded_batch(batch_size)
    return ds.map(lambda b: finish_batch(b, config, mode), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
