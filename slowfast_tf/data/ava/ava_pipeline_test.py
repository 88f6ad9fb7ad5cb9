"""AVA pipeline ops: eagerly, inside Dataset.map, and against NumPy ports of PySlowFast's
``cv2_transform`` box functions and ``ava_helper.get_sequence``."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.data.ava import ava_pipeline as P
from slowfast_tf.data.ava.ava_files import AvaRow
from slowfast_tf.data.ava.ava_records import make_segment_example, parse_segment_example
from slowfast_tf.testing.fake_records import frame_index_of, frame_level, write_records


# ------------------------------------------------------------ NumPy reference (published defs)
def ref_get_sequence(center, half_len, sample_rate, num_frames):
    seq = list(range(center - half_len, center + half_len, sample_rate))
    return [min(max(s, 0), num_frames - 1) for s in seq]


def ref_scale(height, width, size, boxes):
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width, boxes
    if width < height:
        new_h = int(math.floor(float(height) / width * size))
        return new_h, size, boxes * float(new_h) / height
    new_w = int(math.floor(float(width) / height * size))
    return size, new_w, boxes * float(new_w) / width


def ref_flip(boxes, width):
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2] - 1
    out[:, 2] = width - boxes[:, 0] - 1
    return out


def ref_clip(boxes, height, width):
    out = boxes.copy()
    out[:, [0, 2]] = np.minimum(width - 1.0, np.maximum(0.0, boxes[:, [0, 2]]))
    out[:, [1, 3]] = np.minimum(height - 1.0, np.maximum(0.0, boxes[:, [1, 3]]))
    return out


def in_map(fn, *args):
    """Runs fn inside Dataset.map on one element."""
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(fn)
    return next(iter(ds))


BOXES = np.array([[3.5, 2.0, 30.25, 40.0], [-4.0, 10.0, 70.0, 50.0], [0.0, 0.0, 63.0, 47.0]],
                 np.float32)


@pytest.mark.parametrize("runner", ["eager", "map"])
def test_clip_indices_match_get_sequence(runner):
    for center, n, t, tau in [(60, 120, 16, 2), (3, 120, 32, 2), (118, 120, 8, 8), (0, 1, 4, 16)]:
        def fn(c, n=n, t=t, tau=tau):
            return P.clip_indices(c, t, tau, n)

        got = fn(tf.constant(center)) if runner == "eager" else in_map(fn, center)
        assert got.numpy().tolist() == ref_get_sequence(center, t * tau // 2, tau, n)


@pytest.mark.parametrize("runner", ["eager", "map"])
@pytest.mark.parametrize("height, width, size", [(48, 64, 32), (64, 48, 40), (48, 64, 48),
                                                 (256, 341, 300), (90, 90, 45)])
def test_scale_with_boxes_matches_reference(runner, height, width, size):
    frames = tf.zeros([2, height, width, 3], tf.uint8)

    def fn(f, b):
        return P.scale_short_side_with_boxes(f, b, size)

    out, boxes = fn(frames, BOXES) if runner == "eager" else in_map(fn, frames, BOXES)
    new_h, new_w, ref = ref_scale(height, width, size, BOXES.astype(np.float64))
    assert out.shape == (2, new_h, new_w, 3)
    np.testing.assert_allclose(boxes.numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize("runner", ["eager", "map"])
def test_crop_flip_clip_match_reference(runner):
    frames = tf.reshape(tf.range(2 * 48 * 64 * 3, dtype=tf.float32), [2, 48, 64, 3])
    seed = tf.constant([3, 4])

    def fn(f, b):
        cropped, cb = P.random_crop_with_boxes(f, b, 32, seed)
        flipped, fb = P.flip_with_boxes(cropped, cb, flip=tf.constant(True))
        return cropped, cb, flipped, fb, P.clip_boxes_to_image(fb, 32, 32)

    cropped, cb, flipped, fb, clipped = fn(frames, BOXES) if runner == "eager" else in_map(fn, frames, BOXES)
    # recover the offsets from the pixels, then check the boxes against the reference
    flat = frames.numpy()
    found = [(y, x) for y in range(17) for x in range(33)
             if np.array_equal(flat[:, y:y + 32, x:x + 32], cropped.numpy())]
    assert len(found) == 1
    y, x = found[0]
    np.testing.assert_allclose(cb.numpy(), BOXES - np.array([x, y, x, y], np.float32))
    np.testing.assert_array_equal(flipped.numpy(), cropped.numpy()[:, :, ::-1])
    np.testing.assert_allclose(fb.numpy(), ref_flip(cb.numpy(), 32))
    np.testing.assert_allclose(clipped.numpy(), ref_clip(ref_flip(cb.numpy(), 32), 32, 32))


def test_jitter_size_is_inverse_uniform_and_in_range():
    sizes = [int(P.jitter_size(256, 320, tf.constant([i, 0]))) for i in range(400)]
    assert min(sizes) >= 256 and max(sizes) <= 320
    # 1/U(1/320, 1/256): the median is the harmonic midpoint 284.4, below the linear midpoint 288
    assert 280 <= np.median(sizes) <= 287


@pytest.mark.parametrize("runner", ["eager", "map"])
def test_merge_and_pad_boxes(runner):
    boxes = np.array([[.1, .2, .3, .4], [.5, .5, .6, .6], [.1, .2, .3, .4], [.7, .7, .8, .8]], np.float32)
    labels = np.array([3, -1, 80, 1], np.int64)

    def fn(b, lab):
        merged, hot = P.merge_boxes(b, lab, 80)
        return P.pad_boxes(merged, hot, 4) + (merged,)

    padded, mask, hot, merged = fn(boxes, labels) if runner == "eager" else in_map(fn, boxes, labels)
    np.testing.assert_array_equal(merged.numpy(), boxes[[0, 1, 3]])
    assert mask.numpy().tolist() == [1, 1, 1, 0]
    assert np.flatnonzero(hot[0]).tolist() == [2, 79] and hot[1].numpy().sum() == 0
    assert np.flatnonzero(hot[2]).tolist() == [0] and hot[3].numpy().sum() == 0
    np.testing.assert_array_equal(padded[3].numpy(), 0)
    # more boxes than slots keeps the first ones
    p2, m2, _ = P.pad_boxes(merged, hot[:3], 2)
    assert p2.shape == (2, 4) and m2.numpy().tolist() == [1, 1]


def _segment(tmp_path, num_frames=60, start=10, stored=50, height=24, width=32, name="seg"):
    """A 60-frame video at 30 fps (frame 0 at 900 s); the segment stores frames [10, 60)."""
    jpegs = []
    for i in range(start, start + stored):
        frame = np.full((height, width, 3), frame_level(i), np.uint8)
        frame[4:12, 8:16] = 255  # a white square at pixel box (8, 4, 16, 12), the GT box
        jpegs.append(tf.io.encode_jpeg(frame, quality=95).numpy())
    box = (8 / width, 4 / height, 16 / width, 12 / height)
    gt = {901: [AvaRow("v", 901, box, 3, person_id=0), AvaRow("v", 901, box, 5, person_id=0)]}
    pred = {901: [AvaRow("v", 901, (0.5, 0.5, 0.9, 0.9), -1, score=0.95),
                  AvaRow("v", 901, (0.1, 0.1, 0.2, 0.2), -1, score=0.3)],
            902: [AvaRow("v", 902, (0.1, 0.1, 0.2, 0.2), -1, score=0.3)]}
    example = make_segment_example("v", jpegs, start, num_frames, 30.0, height, width, [901, 902],
                                   gt, pred, time_offset=900)
    return write_records(tmp_path / f"{name}.tfrecord", [example.SerializeToString()])


def test_keyframes_of_segment_gathers_clamped_clips_and_filters_boxes(tmp_path):
    path = _segment(tmp_path)
    parsed = parse_segment_example(next(iter(tf.data.TFRecordDataset(path))))
    assert parsed["keyframe_sec"].numpy().tolist() == [901, 902]
    config = P.AvaDataConfig(num_frames=8, sampling_rate=4, alpha=4, detection_score_thresh=0.8)
    train = list(P.keyframes_of_segment(parsed, config, "train"))
    # 901: 2 GT rows + 1 detector box above 0.8; 902 has only a 0.3 box -> skipped
    assert [int(e["sec"]) for e in train] == [901]
    assert train[0]["boxes"].shape == (3, 4) and train[0]["labels"].numpy().tolist() == [3, 5, -1]
    decoded = tf.map_fn(lambda j: tf.io.decode_jpeg(j), train[0]["jpegs"], fn_output_signature=tf.uint8)
    # centre frame 30, range(30 - 16, 30 + 16, 4), inside the stored [10, 60)
    assert frame_index_of(decoded[:, 14:, 18:].numpy()).tolist() == ref_get_sequence(30, 16, 4, 60)
    test = list(P.keyframes_of_segment(parsed, config, "test"))
    assert [e["boxes"].shape[0] for e in test] == [1]
    oracle = list(P.keyframes_of_segment(parsed, dataclasses.replace(config, test_boxes="groundtruth"), "test"))
    assert [e["boxes"].shape[0] for e in oracle] == [2]
    # a 32x2 clip needs frames [-2, 62) clamped to [0, 59]; the segment only stores [10, 60)
    with pytest.raises(tf.errors.InvalidArgumentError, match="context_frames"):
        list(P.keyframes_of_segment(parsed, P.AvaDataConfig(num_frames=32, sampling_rate=2), "train"))


def test_build_dataset_train_boxes_follow_the_pixels(tmp_path):
    path = _segment(tmp_path)
    config = P.AvaDataConfig(num_frames=8, sampling_rate=4, alpha=4, train_jitter=(24, 40),
                             train_crop=20, test_size=24, max_boxes=3, train_predicted_boxes=False)
    ds = P.build_ava_dataset(path, config, "train", batch_size=1, seed=0)
    assert ds.element_spec[0]["slow"].shape == (1, 2, 20, 20, 3)
    assert ds.element_spec[0]["boxes"].shape == (1, 3, 4) and ds.element_spec[1].shape == (1, 3, 80)
    checked = 0
    for inputs, labels in ds.take(6):
        box = inputs["boxes"][0, 0].numpy() * 20  # pixels of the 20x20 input
        assert inputs["box_mask"][0].numpy().tolist() == [1, 0, 0]
        assert np.flatnonzero(labels[0, 0]).tolist() == [2, 4] and labels[0, 1:].numpy().sum() == 0
        # the white square: pixels well inside the box are bright, pixels well outside are not
        frame = inputs["fast"][0, 0, ..., 0].numpy()
        white = frame > frame.min() + 0.7 * (frame.max() - frame.min())
        ys, xs = np.nonzero(white)
        if len(xs) == 0:
            # the crop missed the square: its clipped box collapsed onto the border (PySlowFast
            # keeps such boxes too)
            assert min(box[2] - box[0], box[3] - box[1]) < 1.5
            checked += 1
            continue
        # flip maps x to W - x - 1 (reference), so the pixel extent sits within 1.5 px of the box
        assert xs.min() >= box[0] - 1.5 and xs.max() <= box[2] + 1.5
        assert ys.min() >= box[1] - 1.5 and ys.max() <= box[3] + 1.5
        checked += 1
    assert checked == 6
    test = P.build_ava_dataset(path, config, "test", batch_size=2)
    inputs, labels, meta = next(iter(test))
    assert inputs["fast"].shape == (1, 8, 24, 32, 3) and inputs["slow"].shape == (1, 2, 24, 32, 3)
    np.testing.assert_allclose(meta["ori_boxes"][0, 0].numpy(), [0.5, 0.5, 0.9, 0.9])
    # test boxes: scaled by 24/24 = 1 then clipped to W - 1 = 31, normalised by the input width
    np.testing.assert_allclose(inputs["boxes"][0, 0].numpy(), [16 / 32, 12 / 24, 28.8 / 32, 21.6 / 24],
                               rtol=1e-5)
    assert meta["video_id"].numpy().tolist() == [b"v"] and meta["sec"].numpy().tolist() == [901]
    with pytest.raises(ValueError, match="No files"):
        P.build_ava_dataset(str(tmp_path / "none-*"), config, "train", 1)
    with pytest.raises(ValueError, match="test_boxes"):
        P.AvaDataConfig(test_boxes="gt")


def test_test_batches_pad_frames_and_normalise_boxes_to_the_padded_input(tmp_path):
    paths = [_segment(tmp_path, width=32, name="a"), _segment(tmp_path, width=48, name="b")]
    config = P.AvaDataConfig(num_frames=8, sampling_rate=4, alpha=4, test_size=24, max_boxes=2)
    inputs, _, meta = next(iter(P.build_ava_dataset(paths, config, "test", batch_size=2)))
    assert inputs["fast"].shape == (2, 8, 24, 48, 3)
    # the 24x32 video is padded with zeros on the right; its box (0.5..0.9 of 32 px, clipped to
    # 31) stays on the same pixels, now divided by the padded width 48
    assert np.all(inputs["fast"][0, :, :, 32:].numpy() == 0)
    np.testing.assert_allclose(inputs["boxes"][0, 0].numpy() * [48, 24, 48, 24], [16, 12, 28.8, 21.6],
                               rtol=1e-5)
    np.testing.assert_allclose(inputs["boxes"][1, 0].numpy() * [48, 24, 48, 24], [24, 12, 43.2, 21.6],
                               rtol=1e-5)
    np.testing.assert_allclose(meta["ori_boxes"][:, 0].numpy(), [[0.5, 0.5, 0.9, 0.9]] * 2)
