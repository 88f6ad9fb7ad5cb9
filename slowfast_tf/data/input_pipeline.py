"""tf.data input pipeline: TFRecord shards of SequenceExamples -> batched model inputs.

``build_dataset(file_pattern, config, mode, batch_size)`` yields

* ``mode="train"`` / ``"val"``: ``(inputs, label)``; random temporal window, scale jitter, random
  crop, flip (``"val"`` = the reference's in-training validation: same random sampling, one clip,
  no shuffle, no repeat, last partial batch kept).
* ``mode="test"``: ``(inputs, label, video_index)``; every video gives ``config.num_clips *
  config.num_crops`` consecutive views (view ``v`` = temporal clip ``v // num_crops``, spatial crop
  ``v % num_crops``, PySlowFast's order). ``video_index`` (int64 ``[B]``) is unique per video, so
  the evaluator sums (or maxes) the per-view softmaxes per index. Keras ``predict`` reads only
  ``inputs`` from such a 3-tuple.

``inputs`` is a dict keyed by pathway, float32 ``[B, T_p, H, W, 3]`` normalised with
``config.mean`` / ``config.std``. ``label`` is int32 ``[B]``, or multi-hot float32
``[B, num_classes]`` when ``config.multi_label``.
"""

from __future__ import annotations

import concurrent.futures
import sys

import tensorflow as tf

from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.data import transforms
from slowfast_tf.data.config import DataConfig
from slowfast_tf.data.records import parse_sequence_example, read_tfrecord_shard

MODES = ("train", "val", "test")
AUTOTUNE = tf.data.AUTOTUNE


class CorruptRecordCounter:
    """Counts records dropped by ``build_dataset(..., skip_corrupt=True)``.

    Pass one to `build_dataset` and read `value()` after (or during) iteration. Records are
    counted once, whatever number of views failed. A broken TFRecord frame (truncated shard, bad
    CRC) ends the reading of that shard; it is not counted here but warned about on stderr with the
    file name, the records read and the bytes left (``records.read_tfrecord_shard``).
    """

    def __init__(self):
        with tf.device("/cpu:0"):
            self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="corrupt_records")

    def value(self) -> int:
        return int(self.variable.numpy())

    def reset(self) -> None:
        self.variable.assign(0)


def label_tensor(label_index: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """int32 class index (the first listed label), or multi-hot float32 ``[num_classes]``."""
    if config.multi_label:
        one_hot = tf.one_hot(tf.cast(label_index, tf.int32), config.num_classes, dtype=tf.float32)
        return tf.reduce_max(tf.concat([one_hot, tf.zeros([1, config.num_classes])], 0), axis=0)
    # An unlabelled record (empty list) gets -1 so it can never pass as class 0.
    return tf.cast(tf.concat([label_index, tf.constant([-1], tf.int64)], 0)[0], tf.int32)


def check_labels(label_index: tf.Tensor, config: DataConfig, mode: str, source) -> tf.Tensor:
    """An assertion that the record's labels fit ``config.num_classes``, naming the record.

    Every index must be in ``[0, num_classes)``. An unlabelled record (no index, or a single -1)
    passes only in ``"test"`` mode (the evaluator excludes and counts it), and in multi-label data
    (an all-zero target); training on it would be undefined (under XLA, a silent NaN).

    Args:
        label_index: int64 ``[L]``, ``parse_sequence_example(...)["label_index"]``.
        config: DataConfig.
        mode: ``"train"``, ``"val"`` or ``"test"``.
        source: ``(path, record_number, video_id)`` tensors, for the message.

    Returns:
        bool scalar (True) to add as a control dependency; fails with ``InvalidArgumentError``.
    """
    n = tf.size(label_index)
    in_range = tf.reduce_all((label_index >= 0) & (label_index < config.num_classes))
    unlabelled = tf.equal(n, 0) | (tf.equal(n, 1) & tf.reduce_all(tf.equal(label_index, -1)))
    if mode == "test" or config.multi_label:
        ok = in_range | unlabelled
    else:
        ok = in_range & tf.logical_not(unlabelled)

    def fail():
        path, record, video_id = source
        s = tf.strings.as_string
        allowed = "" if mode == "test" else "; unlabelled records are only allowed in test mode"
        message = tf.strings.join([
            path, " record ", s(record), " (video/id ", video_id, "): label [",
            tf.strings.reduce_join(s(label_index), separator=","),
            f"] is out of range for num_classes={config.num_classes}{allowed}. "
            "Check --num_classes against the classes.txt of the records.",
        ])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    return tf.cond(ok, lambda: tf.constant(True), fail)


def _sample_and_decode(parsed, config, clip_idx, seed, return_indices=False):
    num_video_frames = tf.shape(parsed["frames"])[0]
    if config.temporal_sampling == "charades":
        indices = transforms.charades_sample_indices(
            num_video_frames, config.num_frames, config.sampling_rate, clip_idx,
            config.num_clips, seed=seed,
        )
        frames = transforms.decode_frames(parsed["frames"], indices)
        return (frames, indices) if return_indices else frames
    clip_size = transforms.clip_size_in_frames(
        parsed["fps"], config.num_frames, config.sampling_rate, config.target_fps
    )
    indices = transforms.temporal_sample_indices(
        num_video_frames, config.num_frames, clip_size, clip_idx, config.num_clips, seed=seed
    )
    frames = transforms.decode_frames(parsed["frames"], indices)
    return (frames, indices) if return_indices else frames


def _finish(frames, config, crop):
    frames = transforms.normalize(frames, config.mean, config.std)
    frames = tf.ensure_shape(frames, [config.num_frames, crop, crop, 3])
    return transforms.pack_pathways(frames, config.alpha, config.pathways)


def preprocess_train(
    parsed: dict[str, tf.Tensor], config: DataConfig, seed: tf.Tensor | None = None
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """One training clip from a parsed record: random window, jitter, crop, flip, normalise, pack.

    Args:
        parsed: output of ``parse_sequence_example``.
        config: DataConfig.
        seed: optional int32 ``[2]`` seed making the clip deterministic.

    Returns:
        ``(inputs_dict, label)``.
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    frames, indices = _sample_and_decode(parsed, config, -1, seeds[0], return_indices=True)
    label = label_tensor(parsed["label_index"], config)
    if config.temporal_sampling == "charades" and config.multi_label and "frame_labels" in parsed:
        # Union of the per-frame labels inside the window; records without them keep the video's.
        window = transforms.window_label_union(parsed["frame_labels"], indices, config.num_classes)
        label = tf.cond(tf.shape(parsed["frame_labels"])[0] > 0, lambda: window, lambda: label)
    lo, hi = config.train_jitter_scales
    # Whole-frame decode and resize, then crop. Decoding only the crop's source window
    # (decode_and_crop_jpeg) and resampling only the crop was measured (256² frames, slowfast_8x8,
    # one thread): with the exact half-pixel grid (tf.image.crop_and_resize) it is ~20% slower,
    # as TF's arbitrary-grid bilinear ops cost 3-4x ResizeBilinear per pixel; ResizeBilinear on
    # the integer window is ~40% faster but samples up to half a source pixel off (edges move).
    frames = transforms.random_short_side_scale(frames, lo, hi, seed=seeds[1])
    frames = transforms.random_crop(frames, config.train_crop, seed=seeds[2])
    if config.random_flip:
        frames = transforms.random_flip(frames, seed=seeds[3])
    return _finish(frames, config, config.train_crop), label


def spatial_test_view(
    frames: tf.Tensor, spec: ClipSpec, num_crops: int = 1, spatial_idx: tf.Tensor | int = 1
) -> dict[str, tf.Tensor]:
    """The spatial part of a test view: decoded clip -> model inputs. Evaluation and serving call it.

    1 crop (evaluation with ``num_crops=1``, the serving signatures, ``predict``): short side ->
    ``spec.short_side`` (PySlowFast ``kinetics.py``: ``train_jitter_scales[0]`` unless
    ``test_short_side`` is set), then a centre crop of ``test_crop``. 3 crops: short side ->
    ``test_crop``, then crop `spatial_idx` (0 left/top, 1 centre, 2 right/bottom). Then normalise
    and PackPathway.

    Args:
        frames: ``[num_frames, H, W, 3]`` uint8 or float RGB (the sampled clip).
        spec: a `ClipSpec` (or `DataConfig`).
        num_crops: 1 or 3.
        spatial_idx: which of the 3 crops (ignored with 1 crop).

    Returns:
        ``{pathway: float32 [T_p, test_crop, test_crop, 3]}``.
    """
    if num_crops > 1:
        frames = transforms.resize_short_side(frames, spec.test_crop)
        frames = transforms.uniform_crop(frames, spec.test_crop, spatial_idx)
    else:
        frames = transforms.resize_short_side(frames, spec.short_side)
        frames = transforms.uniform_crop(frames, spec.test_crop, 1)
    return _finish(frames, spec, spec.test_crop)


def preprocess_test_view(
    parsed: dict[str, tf.Tensor], view: tf.Tensor, config: DataConfig
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Test view `view` of a parsed record: clip ``view // num_crops``, crop ``view % num_crops``
    (the spatial part is `spatial_test_view`)."""
    view = tf.cast(view, tf.int32)
    clip_idx = view // config.num_crops
    frames = _sample_and_decode(parsed, config, clip_idx, seed=tf.zeros([2], tf.int32))
    inputs = spatial_test_view(frames, config, config.num_crops, view % config.num_crops)
    return inputs, label_tensor(parsed["label_index"], config)


def _count_dropped(dataset, counter, index_fn, strip_fn):
    """Counts gaps in the (ordered) record index after ``ignore_errors`` and logs them."""

    def step(state, element):
        last, dropped = state
        index = index_fn(element)
        gap = tf.maximum(index - last - 1, 0)
        dropped = dropped + gap
        if counter is not None:
            counter.variable.assign_add(gap)

        def log():
            tf.print("slowfast_tf.data: skipped", gap, "corrupt record(s); total", dropped,
                     output_stream=sys.stderr)
            return tf.constant(0)

        tf.cond(gap > 0, log, lambda: tf.constant(0))
        return (tf.maximum(last, index), dropped), strip_fn(element)

    init = (tf.constant(-1, tf.int64), tf.constant(0, tf.int64))
    return dataset.scan(init, step)


def build_dataset(
    file_pattern: str | list[str],
    config: DataConfig,
    mode: str = "train",
    batch_size: int = 8,
    *,
    shuffle_buffer: int = 64,
    seed: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    skip_corrupt: bool = True,
    corrupt_counter: CorruptRecordCounter | None = None,
    repeat: bool | None = None,
    cycle_length: int = 8,
) -> tf.data.Dataset:
    """Builds the batched video dataset (see the module docstring for the element structure).

    Args:
        file_pattern: glob (``"/data/k400/train-*.tfrecord"``) or list of globs / files.
        config: DataConfig.
        mode: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: int, per input pipeline (per replica under a strategy).
        shuffle_buffer: int, records in the shuffle buffer (train). A record holds every JPEG of
            a video (MBs at 256p), so this is kept far below image-dataset values; file-order
            shuffling and shard interleaving add more mixing.
        seed: optional int; makes shuffling and augmentation reproducible.
        input_context: ``tf.distribute.InputContext``; shards files (or records, when there are
            fewer files than input pipelines) across input pipelines.
        skip_corrupt: bool, drop records that fail to parse or decode instead of raising, and
            log how many were dropped.
        corrupt_counter: optional `CorruptRecordCounter` that accumulates the dropped count.
        repeat: bool, repeat forever; defaults to True for train, False otherwise.
        cycle_length: int, shards read concurrently (train).

    Returns:
        tf.data.Dataset.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    train = mode == "train"
    repeat = train if repeat is None else repeat
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"No files match file_pattern. Received: file_pattern={file_pattern!r}")

    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    # read_tfrecord_shard detects truncation by size; stat in threads (a round trip each on GCS).
    with concurrent.futures.ThreadPoolExecutor(min(32, len(files))) as pool:
        sizes = list(pool.map(lambda f: tf.io.gfile.stat(f).length, files))
    file_ds = tf.data.Dataset.from_tensor_slices((files, sizes))
    shard_files = num_pipelines > 1 and len(files) >= num_pipelines
    if shard_files:
        file_ds = file_ds.shard(num_pipelines, pipeline_id)

    def read(path, size):
        # (path, record_number, serialized). A broken TFRecord frame (truncated file, bad CRC) ends
        # the reading of this shard only, with a warning naming it and the bytes lost.
        return read_tfrecord_shard(path, size, skip_corrupt)

    if train:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        records = file_ds.interleave(
            read, cycle_length=min(cycle_length, len(files)), block_length=1,
            num_parallel_calls=AUTOTUNE, deterministic=seed is not None,
        )
    else:
        # Sequential, sorted reading: video_index follows the order of the sorted shard list.
        records = file_ds.flat_map(read)
    if num_pipelines > 1 and not shard_files:
        records = records.shard(num_pipelines, pipeline_id)

    # Order, written once:
    # shuffle -> repeat: shuffling first keeps epochs apart (every video once per epoch); after
    #   repeat the buffer would mix the end of one epoch with the start of the next.
    # shuffle raw records (cheap bytes) before map, so decoding work is spent only on what is used.
    # enumerate -> map -> ignore_errors -> scan: the index numbers records in consumption order,
    #   so gaps after ignore_errors count dropped records (map keeps order for that reason).
    # map before batch: per-video decoding has dynamic shapes; batch(drop_remainder=True) in
    #   training then gives static batch shapes (XLA/TPU, per-replica BN stats on equal batches).
    # prefetch last: overlap the input pipeline with the training step.
    if train:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    records = records.enumerate()

    if mode == "test":
        num_views = config.num_views

        def expand(index, record):
            path, number, serialized = record
            parsed = parse_sequence_example(serialized)
            views = tf.data.Dataset.range(num_views)
            return views.map(lambda v: (index, (path, number), parsed, v))

        def test_view(i, source, parsed, v):
            checked = (parsed["label_index"], (*source, parsed["video_id"]))
            return (i, *preprocess_test_view(parsed, v, config), checked)

        ds = records.flat_map(expand)
        ds = ds.map(test_view, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:

        def process(index, record):
            path, number, serialized = record
            parsed = parse_sequence_example(serialized)
            checked = (parsed["label_index"], (path, number, parsed["video_id"]))
            element_seed = None
            if seed is not None:
                element_seed = tf.stack([tf.constant(seed, tf.int64), index])
                element_seed = tf.cast(element_seed % (2**31 - 1), tf.int32)
            return (index, *preprocess_train(parsed, config, seed=element_seed), checked)

        ds = records.map(process, num_parallel_calls=AUTOTUNE, deterministic=True)

    if skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)  # logs the reason; _count_dropped counts

    # After ignore_errors, so that a label out of range stops the run (it is a wrong num_classes or
    # wrong records, not one bad video) instead of being skipped as a corrupt record.
    def validate(index, inputs, label, checked):
        with tf.control_dependencies([check_labels(checked[0], config, mode, checked[1])]):
            return index, inputs, tf.identity(label)

    ds = ds.map(validate, num_parallel_calls=AUTOTUNE, deterministic=True)
    if mode == "test":
        # Unique across input pipelines: local index * pipelines + pipeline id.
        def strip(e):
            return e[1], e[2], e[0] * num_pipelines + pipeline_id
    else:
        def strip(e):
            return e[1], e[2]
    if skip_corrupt:
        ds = _count_dropped(ds, corrupt_counter, lambda e: e[0], strip)
    else:
        ds = ds.map(lambda *e: strip(e))

    ds = ds.batch(batch_size, drop_remainder=train)
    return ds.prefetch(AUTOTUNE)


def make_distributed_dataset(
    strategy: tf.distribute.Strategy,
    file_pattern: str | list[str],
    config: DataConfig,
    mode: str = "train",
    global_batch_size: int = 64,
    **kwargs,
) -> tf.distribute.DistributedDataset:
    """Per-replica pipelines via ``strategy.distribute_datasets_from_function``.

    Each input pipeline reads its own shard of the files (``InputContext``) and batches
    ``global_batch_size / num_replicas`` clips, so BN statistics are per replica as in PySlowFast.

    Args:
        strategy: tf.distribute.Strategy.
        file_pattern: glob or list of globs.
        config: DataConfig.
        mode: ``"train"``, ``"val"`` or ``"test"``.
        global_batch_size: int, divisible by the number of replicas.
        **kwargs: forwarded to `build_dataset`.

    Returns:
        tf.distribute.DistributedDataset.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            "global_batch_size must be divisible by the number of replicas. "
            f"Received: global_batch_size={global_batch_size}, replicas={replicas}"
        )

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        return build_dataset(
            file_pattern, config, mode, per_replica, input_context=context, **kwargs
        )

    return strategy.distribute_datasets_from_function(dataset_fn)
