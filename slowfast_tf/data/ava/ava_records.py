"""TFRecord layout of AVA data: one SequenceExample per video *segment* (MediaSequence keys).

A 15-minute AVA movie has 897 keyframes (1 fps) and 27,000 frames at 30 fps. One record per
keyframe holding its own 64-frame window would store every frame about 64 times over (the
windows of consecutive keyframes overlap by 34 frames); one record per movie is a 400 MB proto
that every keyframe would parse. A segment record stores the frames of ``segment_seconds``
consecutive keyframes once, plus ``context_frames`` on each side, so every keyframe's clip lies
inside its segment: a full segment stores ``(S - 1) * fps + 2 * context_frames`` frames for S
keyframes, 33.4 frames per keyframe at 30 fps, S = 10 and 32 frames of context (against 64 for
per-keyframe records; ``tfrecords_tools/ava_test.py`` checks the number on AVA's 902-1798 plan).

context
    ``clip/media_id`` (video id), ``clip/start/timestamp`` / ``clip/end/timestamp`` (int64 µs,
    video time of the first stored frame and just after the last), ``image/height``,
    ``image/width``, ``image/format`` (``JPEG``), ``image/frame_rate``; non-MediaSequence:
    ``clip/frame/start_index`` (index of the first stored frame in the whole video) and
    ``clip/frame/video_count`` (frames in the whole video; clips are clamped to it, PySlowFast's
    ``get_sequence``).
feature lists, one step per stored frame
    ``image/encoded`` (JPEG), ``image/timestamp`` (µs).
feature lists, one step per keyframe (``region/*`` steps are keyframes, not frames)
    ``region/timestamp`` (``sec * 1e6``), ``region/bbox/{xmin,ymin,xmax,ymax}`` (normalised
    floats, one entry per annotation row: a box with several labels is repeated once per label,
    as MediaSequence does), ``region/label/index`` (AVA action id 1..80), ``region/track/index``
    (person id), and the detector boxes under the ``PREDICTED/`` prefix with
    ``PREDICTED/region/label/index`` (-1 = no label) and ``PREDICTED/region/label/confidence``.

Video time ``t`` of frame ``i`` is ``time_offset + i / fps``; the keyframe of second ``sec`` is
frame ``round((sec - time_offset) * fps)``, PySlowFast's ``(sec - 900) * 30`` for its 15-minute
cuts (``time_offset = 900``).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from slowfast_tf.data.ava.ava_files import AvaRow

MEDIA_ID = "clip/media_id"
START_TS = "clip/start/timestamp"
END_TS = "clip/end/timestamp"
HEIGHT = "image/height"
WIDTH = "image/width"
FORMAT = "image/format"
FRAME_RATE = "image/frame_rate"
START_INDEX = "clip/frame/start_index"
VIDEO_COUNT = "clip/frame/video_count"
IMAGE = "image/encoded"
IMAGE_TS = "image/timestamp"
REGION_TS = "region/timestamp"
BBOX = tuple(f"region/bbox/{c}" for c in ("xmin", "ymin", "xmax", "ymax"))
LABEL = "region/label/index"
TRACK = "region/track/index"
PREDICTED = "PREDICTED/"
PRED_BBOX = tuple(PREDICTED + k for k in BBOX)
PRED_LABEL = PREDICTED + LABEL
PRED_SCORE = PREDICTED + "region/label/confidence"


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_segment_example(
    video_id: str,
    jpeg_frames: Sequence[bytes],
    start_index: int,
    video_num_frames: int,
    fps: float,
    height: int,
    width: int,
    keyframes: Sequence[int],
    groundtruth: dict[int, Sequence[AvaRow]],
    proposals: dict[int, Sequence[AvaRow]],
    time_offset: float = 0.0,
) -> tf.train.SequenceExample:
    """One segment record.

    Args:
        video_id: str.
        jpeg_frames: the stored frames, ``video[start_index : start_index + len]``.
        start_index: int, index of ``jpeg_frames[0]`` in the whole video.
        video_num_frames: int, frames in the whole video.
        fps: float, frame rate of the frames.
        height, width: int, frame size.
        keyframes: the keyframe seconds of this segment, ascending.
        groundtruth: ``{sec: rows}`` annotation rows (action id, person id).
        proposals: ``{sec: rows}`` detector rows (action id or -1, score).
        time_offset: float, video time of frame 0 (900 for PySlowFast's AVA cuts).
    """
    if not jpeg_frames:
        raise ValueError(f"A segment needs at least one frame. Received: video_id={video_id!r}")

    def us(t):
        return int(round(t * 1e6))

    first_t = time_offset + start_index / fps
    context = {
        MEDIA_ID: _bytes([video_id.encode()]),
        START_TS: _int64([us(first_t)]),
        END_TS: _int64([us(first_t + len(jpeg_frames) / fps)]),
        HEIGHT: _int64([height]),
        WIDTH: _int64([width]),
        FORMAT: _bytes([b"JPEG"]),
        FRAME_RATE: _float([fps]),
        START_INDEX: _int64([start_index]),
        VIDEO_COUNT: _int64([video_num_frames]),
    }
    lists = {
        IMAGE: [_bytes([f]) for f in jpeg_frames],
        IMAGE_TS: [_int64([us(first_t + i / fps)]) for i in range(len(jpeg_frames))],
        REGION_TS: [_int64([us(sec)]) for sec in keyframes],
    }
    for keys, label_key, extra_key, table in (
        (BBOX, LABEL, TRACK, groundtruth),
        (PRED_BBOX, PRED_LABEL, PRED_SCORE, proposals),
    ):
        for c, key in enumerate(keys):
            lists[key] = [_float([r.box[c] for r in table.get(sec, ())]) for sec in keyframes]
        lists[label_key] = [_int64([r.action_id for r in table.get(sec, ())]) for sec in keyframes]
        if extra_key == TRACK:
            lists[extra_key] = [_int64([r.person_id for r in table.get(sec, ())]) for sec in keyframes]
        else:
            lists[extra_key] = [_float([r.score for r in table.get(sec, ())]) for sec in keyframes]
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={k: tf.train.FeatureList(feature=v) for k, v in lists.items()}
        ),
    )


def parse_segment_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one segment record (eagerly or inside ``Dataset.map``).

    Returns:
        dict: ``frames`` string ``[N]``; ``video_id``; ``fps`` float32; ``height``, ``width``,
        ``start_index``, ``video_num_frames``, ``start_us`` int64; ``keyframe_sec`` int64 ``[K]``;
        ragged ``[K, None]``/``[K, None, 4]``: ``gt_boxes`` (x1, y1, x2, y2), ``gt_labels``,
        ``gt_person``, ``pred_boxes``, ``pred_labels``, ``pred_scores``.
    """
    context_spec = {
        MEDIA_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        START_TS: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=30.0),
        START_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        VIDEO_COUNT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    ragged_float = tf.io.RaggedFeature(tf.float32)
    ragged_int = tf.io.RaggedFeature(tf.int64)
    sequence_spec = {IMAGE: tf.io.FixedLenSequenceFeature([], tf.string),
                     REGION_TS: tf.io.FixedLenSequenceFeature([], tf.int64)}
    for key in BBOX + PRED_BBOX + (PRED_SCORE,):
        sequence_spec[key] = ragged_float
    for key in (LABEL, TRACK, PRED_LABEL):
        sequence_spec[key] = ragged_int
    context, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    num_frames = tf.shape(seq[IMAGE], out_type=tf.int64)[0]
    video_count = context[VIDEO_COUNT]
    return {
        "frames": seq[IMAGE],
        "video_id": context[MEDIA_ID],
        "fps": context[FRAME_RATE],
        "height": context[HEIGHT],
        "width": context[WIDTH],
        "start_index": context[START_INDEX],
        "video_num_frames": tf.where(video_count > 0, video_count, context[START_INDEX] + num_frames),
        "start_us": context[START_TS],
        "keyframe_sec": seq[REGION_TS] // 1_000_000,
        "gt_boxes": tf.stack([seq[k] for k in BBOX], axis=-1),
        "gt_labels": seq[LABEL],
        "gt_person": seq[TRACK],
        "pred_boxes": tf.stack([seq[k] for k in PRED_BBOX], axis=-1),
        "pred_labels": seq[PRED_LABEL],
        "pred_scores": seq[PRED_SCORE],
    }
