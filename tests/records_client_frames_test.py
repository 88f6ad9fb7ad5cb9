"""No train/serve skew: TFRecords and the serving client see the same frames of a video.

Both decode with `slowfast_tf.video_io` and resize by its one rule; the frames the record encoder
JPEG-encodes are bit-identical to what the client sends, and the stored JPEGs decode to them up to
JPEG error, at the same size (the client's old bilinear ``round()`` rule gave 53 columns here).
"""

import numpy as np
import tensorflow as tf

from slowfast_tf.data import synthetic
from slowfast_tf.serving import client
from tfrecords_tools import encode


def test_records_and_client_frames_are_identical(tmp_path, monkeypatch):
    path = str(tmp_path / "wide.mp4")
    synthetic.write_mp4(path, synthetic.render_video(2, np.random.default_rng(3), 64, 20)[:, 8:56])
    encoded_inputs = []
    original_call = encode._JpegEncoder.__call__

    def capture(self, frame):
        encoded_inputs.append(frame.to_ndarray(format="rgb24"))
        return original_call(self, frame)

    monkeypatch.setattr(encode._JpegEncoder, "__call__", capture)
    record = encode.encode_video(path, encode.EncodeSettings(target_fps=30, short_side=40))
    served, fps = client.decode_video(path, resize_short_side=40)
    assert served.shape == (20, 40, 54, 3) and fps == 30.0
    assert (record.height, record.width) == (40, 54)
    np.testing.assert_array_equal(np.stack(encoded_inputs), served)
    stored = np.stack([tf.io.decode_jpeg(j).numpy() for j in record.jpeg_frames])
    assert stored.shape == served.shape
    assert np.abs(stored.astype(float) - served).mean() < 4.0  # JPEG q=3 on a noisy texture
