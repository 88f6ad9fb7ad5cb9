"""TFRecord layout of a converted video: one ``tf.train.SequenceExample`` per video.

The keys follow TF Model Garden's video records (``official/vision/dataloaders/video_input.py``),
so shards written by ``python -m tfrecords_tools convert`` can be read by Model Garden and vice
versa:

context
    ``clip/label/index`` (int64 list; several entries = multi-label), ``clip/label/text`` (bytes
    list, same order), ``video/id`` (bytes), ``video/fps`` (float, the fps *after* resampling),
    ``image/height``, ``image/width``, ``clip/num_frames`` (int64).
feature_lists
    ``image/encoded``: one JPEG string per frame.

The writer side (:func:`make_sequence_example`) is used by the converter and by tests; the reader
side (:func:`parse_sequence_example`) by the input pipeline and by the serving signature that takes
serialized SequenceExamples.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

IMAGE_KEY = "image/encoded"
LABEL_INDEX_KEY = "clip/label/index"
LABEL_TEXT_KEY = "clip/label/text"
VIDEO_ID_KEY = "video/id"
FPS_KEY = "video/fps"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
NUM_FRAMES_KEY = "clip/num_frames"
# Per-frame label sets (Charades frame lists): one int64 list per frame, in frame order.
FRAME_LABEL_KEY = "image/label/index"


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_sequence_example(
    jpeg_frames: Sequence[bytes],
    label_indices: Sequence[int],
    label_texts: Sequence[str] = (),
    video_id: str = "",
    fps: float = 30.0,
    height: int = 0,
    width: int = 0,
) -> tf.train.SequenceExample:
    """Builds the SequenceExample for one video.

    Args:
        jpeg_frames: list[bytes], one JPEG per frame, in display order.
        label_indices: list[int], class indices (one for single-label data, any number for
            multi-label data such as Charades).
        label_texts: list[str], the class names in the same order as `label_indices`.
        video_id: str, a stable identifier (Kinetics: ``{youtube_id}_{start:06d}_{end:06d}``).
        fps: float, frame rate of `jpeg_frames` (after resampling).
        height: int, frame height in pixels.
        width: int, frame width in pixels.

    Returns:
        tf.train.SequenceExample.
    """
    if not jpeg_frames:
        raise ValueError(f"A video record needs at least one frame. Received: jpeg_frames={jpeg_frames!r}")
    if label_texts and len(label_texts) != len(label_indices):
        raise ValueError(
            "label_texts must match label_indices one to one. "
            f"Received: label_indices={list(label_indices)}, label_texts={list(label_texts)}"
        )
    context = tf.train.Features(
        feature={
            LABEL_INDEX_KEY: _int64(label_indices),
            LABEL_TEXT_KEY: _bytes([t.encode("utf-8") for t in label_texts]),
            VIDEO_ID_KEY: _bytes([video_id.encode("utf-8")]),
            FPS_KEY: _float([fps]),
            HEIGHT_KEY: _int64([height]),
            WIDTH_KEY: _int64([width]),
            NUM_FRAMES_KEY: _int64([len(jpeg_frames)]),
        }
    )
    frames = tf.train.FeatureList(feature=[_bytes([f]) for f in jpeg_frames])
    return tf.train.SequenceExample(
        context=context, feature_lists=tf.train.FeatureLists(feature_list={IMAGE_KEY: frames})
    )


def parse_sequence_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized video record (works eagerly and inside ``Dataset.map``).

    Args:
        serialized: tf.string scalar.

    Returns:
        dict with ``"frames"`` (tf.string ``[N]`` JPEGs), ``"label_index"`` (int64 ``[L]``),
        ``"label_text"`` (string ``[L]``), ``"video_id"`` (string), ``"fps"`` (float32; 0 when the
        record has none, the sampler then assumes the config's target fps), ``"height"``,
        ``"width"``, ``"num_frames"`` (int64), ``"frame_labels"`` (int64 ``[N, K]`` per-frame
        label sets padded with -1; ``[0, 0]`` when the record has none).
    """
    context_spec = {
        LABEL_INDEX_KEY: tf.io.VarLenFeature(tf.int64),
        LABEL_TEXT_KEY: tf.io.VarLenFeature(tf.string),
        VIDEO_ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FPS_KEY: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        HEIGHT_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        WIDTH_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        NUM_FRAMES_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    sequence_spec = {
        IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string),
        FRAME_LABEL_KEY: tf.io.VarLenFeature(tf.int64),
    }
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    return {
        "frames": sequence[IMAGE_KEY],
        "label_index": tf.sparse.to_dense(context[LABEL_INDEX_KEY]),
        "label_text": tf.sparse.to_dense(context[LABEL_TEXT_KEY], default_value=""),
        "video_id": context[VIDEO_ID_KEY],
        "fps": context[FPS_KEY],
        "height": context[HEIGHT_KEY],
        "width": context[WIDTH_KEY],
        "num_frames": context[NUM_FRAMES_KEY],
        "frame_labels": tf.sparse.to_dense(sequence[FRAME_LABEL_KEY], default_value=-1),
    }


# Bytes a TFRecord frame adds around each record: uint64 length, uint32 CRC of the length, the
# data, uint32 CRC of the data. A shard that was read completely has size == sum(len + 16).
TFRECORD_FRAME_BYTES = 16


def _shard_warning(path, num_records, bytes_read, size) -> str:
    lost = size - bytes_read
    per_record = bytes_read / num_records if num_records else 0
    estimate = f" (~{math.ceil(lost / per_record)} records at this shard's average size)" if per_record else ""
    return (f"{path}: truncated or corrupt TFRecord shard: read {num_records} records "
            f"({bytes_read} of {size} bytes), the remaining {lost} bytes{estimate} are skipped.")


def read_tfrecord_shard(path, size, skip_corrupt: bool = True) -> tf.data.Dataset:
    """Records of one TFRecord shard as ``(path, record_number, serialized)``.

    With ``skip_corrupt``, a broken frame (truncated file, bad CRC) ends the reading of this shard
    instead of the whole run, and a warning naming the file, the records read and the bytes left
    unread is printed to stderr (TFRecord framing cannot be resynchronised, so the records after
    the break are lost). ``size`` is the file size in bytes (``tf.io.gfile.stat(path).length``):
    the shard was read completely iff the frames read add up to it.

    Args:
        path: tf.string scalar (or str), the shard.
        size: int64 scalar, the shard's size in bytes.
        skip_corrupt: bool; False raises ``DataLossError`` on a broken frame.

    Returns:
        tf.data.Dataset of ``(path, int64 record_number, serialized)``.
    """
    path = tf.convert_to_tensor(path, tf.string)
    records = tf.data.TFRecordDataset(path)
    if not skip_corrupt:
        return records.enumerate().map(lambda i, r: (path, i, r))
    # A sentinel after the last readable record lets the scan compare the bytes read with `size`.
    flagged = records.ignore_errors().map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True))
    )
    size = tf.cast(size, tf.int64)

    def step(state, element):
        count, nbytes = state
        serialized, is_end = element

        def warn():
            lost = size - nbytes
            per_record = tf.maximum(nbytes // tf.maximum(count, 1), 1)
            estimate = (lost + per_record - 1) // per_record  # a partial record is lost too
            s = tf.strings.as_string
            tf.print(tf.strings.join([
                "WARNING slowfast_tf.data: ", path, ": truncated or corrupt TFRecord shard: read ",
                s(count), " records (", s(nbytes), " of ", s(size), " bytes), the remaining ",
                s(lost), " bytes (~", s(estimate), " records) are skipped.",
            ]), output_stream=sys.stderr)
            return tf.constant(0)

        tf.cond(is_end & tf.not_equal(nbytes, size), warn, lambda: tf.constant(0))
        frame = tf.cast(tf.strings.length(serialized), tf.int64) + TFRECORD_FRAME_BYTES
        new_state = (count + 1, nbytes + frame)
        return new_state, (path, count, serialized, is_end)

    scanned = flagged.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    return scanned.filter(lambda p, i, r, is_end: tf.logical_not(is_end)).map(
        lambda p, i, r, is_end: (p, i, r)
    )


def count_records(files: Sequence[str]) -> int:
    """Counts the readable records of TFRecord shards; a broken shard is counted up to its break.

    Each broken shard is logged as a warning naming the file, the records read and the bytes lost.
    """
    total = 0
    for path in files:
        size = tf.io.gfile.stat(path).length
        count, nbytes = tf.data.TFRecordDataset(path).ignore_errors().reduce(
            (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
            lambda s, r: (s[0] + 1, s[1] + tf.cast(tf.strings.length(r), tf.int64)
                          + TFRECORD_FRAME_BYTES),
        )
        count, nbytes = int(count), int(nbytes)
        if nbytes != size:
            logging.warning(_shard_warning(path, count, nbytes, size))
        total += count
    return total
