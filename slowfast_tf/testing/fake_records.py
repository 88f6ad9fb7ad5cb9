"""Test helpers: in-memory fake video records (TF Model Garden ``fake_seq_example`` style).

Frame ``i`` of a fake video is a flat grey image of level ``frame_level(i)``, which survives JPEG
exactly enough to read the frame index back from decoded pixels (``frame_index_of``).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from slowfast_tf.data.records import make_sequence_example

_LEVEL_STEP = 4  # grey step per frame: 64 distinct frames fit in uint8 with margin for JPEG error


def frame_level(index: int) -> int:
    """Grey level of fake frame `index` (indices wrap every 64 frames)."""
    return 2 + _LEVEL_STEP * (index % 63)


def frame_index_of(pixels) -> np.ndarray:
    """Recovers fake frame indices from decoded uint8 or [0, 255] float frames ``[..., T, H, W, C]``."""
    mean = np.asarray(pixels, np.float32).mean(axis=(-3, -2, -1))
    return np.round((mean - 2) / _LEVEL_STEP).astype(np.int64)


def fake_video_record(
    num_frames: int = 20,
    height: int = 24,
    width: int = 32,
    label_indices=(1,),
    label_texts=None,
    fps: float = 30.0,
    video_id: str = "video",
) -> bytes:
    """Serialized SequenceExample of a fake video with index-coded grey frames."""
    jpegs = []
    for i in range(num_frames):
        frame = np.full((height, width, 3), frame_level(i), np.uint8)
        jpegs.append(tf.io.encode_jpeg(frame, quality=95).numpy())
    texts = label_texts if label_texts is not None else [f"class_{i}" for i in label_indices]
    example = make_sequence_example(
        jpegs, list(label_indices), texts, video_id=video_id, fps=fps, height=height, width=width
    )
    return example.SerializeToString()


def write_records(path: str | os.PathLike, records) -> str:
    """Writes serialized records (bytes) to one TFRecord file and returns its path."""
    path = os.fspath(path)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path
