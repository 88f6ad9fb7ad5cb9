"""``SlowFastDetector``: shared harness, RoI head numerics, padding invariance, errors."""

import keras
import numpy as np
import pytest

from slowfast_tf import models
from slowfast_tf.models.slowfast import SlowFastBackbone, SlowFastDetector
from slowfast_tf.testing.model_harness import run_video_detector_test
from slowfast_tf.testing.roi_align_reference import roi_align_reference

SIZE = 64
TINY = dict(
    depth=18, width=8, num_frames=8, image_size=SIZE, spatial_strides=(1, 2, 2, 1),
    spatial_dilations=(1, 1, 1, 2),
)  # fmt: skip
BOXES = np.array(
    [
        [[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.52, 0.51]],
        [[0.3, 0.1, 0.9, 0.7], [-0.2, 0.4, 0.3, 1.3], [0.7, 0.7, 0.75, 0.8]],
    ],
    dtype=np.float32,
)
MASK = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32)


def _clips(arch="slowfast", batch=2, seed=0):
    rng = np.random.default_rng(seed)
    fast = rng.normal(size=(batch, 8, SIZE, SIZE, 3)).astype(np.float32)
    if arch == "slow":
        return {"slow": fast}
    return {"slow": fast[:, ::4], "fast": fast}


def _inputs(arch="slowfast"):
    return {**_clips(arch), "boxes": BOXES, "box_mask": MASK}


def _trained_like(model):
    """Non-zero residual gammas and a visible bias, so every part of the head matters."""
    for weight in model.weights:
        if weight.path.endswith("gamma"):
            weight.assign(np.random.default_rng(1).uniform(0.5, 1.5, weight.shape))
    bias = model.head_projection.bias
    bias.assign(np.linspace(-1, 1, bias.shape[0]).astype("float32"))
    return model


@pytest.mark.slow
def test_detector_harness():
    # The harness counts an all-zero gradient as missing; with this tiny width a fast-pathway BN
    # can get one from an unlucky random init, so the weights must not depend on test order.
    keras.utils.set_random_seed(0)
    backbone = SlowFastBackbone(**TINY)
    run_video_detector_test(
        SlowFastDetector,
        {"backbone": backbone, "num_classes": 5, "dropout": 0.2},
        _inputs(),
        (2, 3, 5),
    )


@pytest.mark.parametrize("arch,aligned", [("slowfast", True), ("slow", False)])
def test_roi_features_match_reference_head(arch, aligned):
    """The per-box features equal PySlowFast's head arithmetic on the backbone endpoints:
    temporal mean, RoIAlign (NumPy definition) on input-pixel boxes at 1/16, 7x7 max, concat."""
    kwargs = dict(TINY, arch=arch, num_frames=8 if arch == "slowfast" else 4)
    model = _trained_like(SlowFastDetector(SlowFastBackbone(**kwargs), num_classes=4, aligned=aligned))
    inputs = _inputs(arch)
    if arch == "slow":
        inputs["slow"] = inputs["slow"][:, :4]
    got = keras.ops.convert_to_numpy(model.build_eval_model()(inputs)["features"])
    endpoints = model.backbone({k: inputs[k] for k in model.pathways})
    pooled = np.concatenate(
        [np.asarray(endpoints[f"{k}_res5"]).mean(axis=1) for k in model.pathways], axis=-1
    )
    assert pooled.shape[1:3] == (SIZE // 16, SIZE // 16)
    want = np.zeros(got.shape, np.float32)
    for b in range(2):
        rois = np.concatenate([np.full((3, 1), b, np.float32), BOXES[b] * SIZE], axis=1)
        aligned_maps = roi_align_reference(
            np.transpose(pooled, (0, 3, 1, 2)), rois, 7, 1 / 16, 0, aligned
        )
        want[b] = aligned_maps.max(axis=(2, 3)) * MASK[b][:, None]
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_padding_never_changes_valid_outputs():
    model = _trained_like(models.build_model("slowfast_r50_ava_32x2", num_classes=6, **TINY))
    clips = _clips()
    compact = model({**clips, "boxes": BOXES[:, :2], "box_mask": np.ones((2, 2), np.float32)})
    # Same two real boxes at rows 0 and 3 of 5; padding rows hold NaN, inf and inverted boxes.
    boxes = np.full((2, 5, 4), np.nan, np.float32)
    boxes[:, 1] = [np.inf, -np.inf, 1e30, 5.0]
    boxes[:, 4] = [0.9, 0.9, 0.1, 0.1]
    boxes[:, 0], boxes[:, 3] = BOXES[:, 0], BOXES[:, 1]
    mask = np.array([[1, 0, 0, 1, 0]] * 2, np.float32)
    eval_outputs = model.build_eval_model()({**clips, "boxes": boxes, "box_mask": mask})
    padded = keras.ops.convert_to_numpy(model({**clips, "boxes": boxes, "box_mask": mask}))
    np.testing.assert_allclose(padded[:, [0, 3]], np.asarray(compact), rtol=1e-6, atol=1e-6)
    for out in (padded, *(keras.ops.convert_to_numpy(v) for v in eval_outputs.values())):
        assert np.all(np.isfinite(out))
        np.testing.assert_array_equal(out[:, [1, 2, 4]], 0.0)
    assert np.abs(np.asarray(compact)).max() > 0.1


def test_static_max_boxes_and_dispatch():
    model = models.build_model("slow_r50_ava_4x16", max_boxes=4, **dict(TINY, num_frames=4))
    assert isinstance(model, SlowFastDetector)
    assert model.output_shape == (None, 4, 80)  # AVA's 80 classes by default
    assert model.aligned is True and model.spatial_scale == 1 / 16
    assert models.build_model("slowfast_r50_detection", **TINY).aligned is False
    assert models.get_preset("slowfast_r101_50_50_ava_32x2").aligned is False
    assert models.build_model("slowfast_r50_ava_32x2", aligned=False, **TINY).aligned is False


def test_bad_inputs_raise_clear_errors():
    model = SlowFastDetector(SlowFastBackbone(**TINY), num_classes=3)
    with pytest.raises(ValueError, match=r"plus \['boxes', 'box_mask'\]"):
        model(_clips())
    with pytest.raises(ValueError, match="must be \\[batch, max_boxes, 4\\]"):
        model({**_clips(), "boxes": BOXES[..., :3], "box_mask": MASK})
    with pytest.raises(ValueError, match="same max_boxes"):
        model({**_clips(), "boxes": BOXES, "box_mask": MASK[:, :2]})
    with pytest.raises(ValueError, match="Received: sampling_ratio=-1"):
        SlowFastDetector(SlowFastBackbone(**TINY), sampling_ratio=-1)


def test_detector_keras_file_carries_the_clip_spec(tmp_path):
    from slowfast_tf.clip_spec import ClipSpec, get_clip_spec

    model = models.build_model("slowfast_r50_ava_32x2", max_boxes=3, **TINY)
    # The backbone's fixed image_size sets the crops and short side; frames follow num_frames.
    expected = get_clip_spec("ava_slowfast_32x2").replace(
        num_frames=8, train_crop=SIZE, test_crop=SIZE, test_short_side=SIZE,
        train_jitter_scales=(SIZE, SIZE),
    )
    assert ClipSpec.from_dict(model.clip_spec) == expected
    path = str(tmp_path / "d.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert ClipSpec.from_dict(loaded.clip_spec) == expected
