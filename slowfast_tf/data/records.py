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

from collections.abc import Sequence

import tensorflow as tf

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
