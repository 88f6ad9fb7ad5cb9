"""Request payloads shared by the client and the export's warm-up records.

Kept out of `client.py` so that importing the package (`slowfast_tf.serving`, which exports
`export_for_serving`) never imports the client module: `python -m slowfast_tf.serving.client`
would otherwise find it already in `sys.modules` and runpy warns before running it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from slowfast_tf.data import make_sequence_example


def encode_sequence_example(frames: np.ndarray, fps: float = 30.0, quality: int = 95) -> bytes:
    """uint8 `[N, H, W, 3]` video -> serialized SequenceExample in the project's record layout.

    One JPEG per frame under `image/encoded` (`slowfast_tf.data.make_sequence_example`), so the
    `serve_examples` signature cuts the clip out of it exactly as offline evaluation would.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            "`frames` must be uint8 [N, H, W, 3] with N >= 1. "
            f"Received: dtype={frames.dtype}, shape={list(frames.shape)}"
        )
    jpegs = [tf.io.encode_jpeg(f, quality=quality).numpy() for f in frames]
    example = make_sequence_example(
        jpegs, [], fps=fps, height=frames.shape[1], width=frames.shape[2]
    )
    return example.SerializeToString()
