import keras
import numpy as np
import pytest

from slowfast_tf.models.slowfast.slowfast_backbone import SlowFastBackbone
from slowfast_tf.models.slowfast.slowfast_video_classifier import SlowFastVideoClassifier
from slowfast_tf.testing.model_harness import run_video_classifier_test

TINY = dict(depth=18, width=8, beta_inv=4, num_frames=8, alpha=4)


def _inputs(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "slow": rng.normal(size=(batch, 2, size, size, 3)).astype("float32"),
        "fast": rng.normal(size=(batch, 8, size, size, 3)).astype("float32"),
    }


def test_classifier_harness():
    backbone = SlowFastBackbone(**TINY, image_size=32)
    model = run_video_classifier_test(
        SlowFastVideoClassifier,
        {"backbone": backbone, "num_classes": 5},
        _inputs(2, 32),
        (2, 5),
    )
    assert model.head_pool_size == {"slow": (2, 1, 1), "fast": (8, 1, 1)}
    # Dense rows 0..255 see the slow pooled features, rows 256..319 the fast ones.
    assert tuple(model.get_layer("head_projection").kernel.shape) == (256 + 64, 5)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_eval_model_at_256_is_mean_of_four_softmaxes():
    backbone = SlowFastBackbone(**TINY)  # any spatial size
    model = SlowFastVideoClassifier(backbone, num_classes=6, train_crop_size=224)
    assert model.head_pool_size == {"slow": (2, 7, 7), "fast": (8, 7, 7)}
    projection = model.get_layer("head_projection")
    rng = np.random.default_rng(1)
    # Larger random weights than the N(0, 0.01) init so the four per-position softmaxes differ
    # clearly without saturating.
    projection.kernel.assign(0.1 * rng.normal(size=projection.kernel.shape).astype("float32"))
    projection.bias.assign(rng.normal(size=projection.bias.shape).astype("float32"))
    x = _inputs(1, 256)
    outputs = model.build_eval_model()(x)

    endpoints = backbone(x)
    pooled = []
    for key, t in (("slow", 2), ("fast", 8)):
        feat = np.asarray(endpoints[f"{key}_res5"])  # [1, t, 8, 8, C]
        assert feat.shape[1:4] == (t, 8, 8)
        # The (t, 7, 7) stride-1 pool on the 8x8 map leaves a 2x2 grid of positions.
        grid = np.zeros((1, 2, 2, feat.shape[-1]), "float32")
        for i in range(2):
            for j in range(2):
                grid[:, i, j] = feat[:, :, i : i + 7, j : j + 7].mean(axis=(1, 2, 3))
        pooled.append(grid)
    feats = np.concatenate(pooled, axis=-1)
    logits = feats @ np.asarray(projection.kernel) + np.asarray(projection.bias)
    want_probs = _softmax(logits).mean(axis=(1, 2))
    np.testing.assert_allclose(outputs["probabilities"], want_probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outputs["logits"], logits.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["features"], feats.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model(x), logits.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_single_pathway_sigmoid_head():
    backbone = SlowFastBackbone(**{**TINY, "arch": "i3d", "num_frames": 4}, image_size=32)
    model = SlowFastVideoClassifier(backbone, num_classes=3, activation="sigmoid")
    assert model.head_pool_size == {"slow": (2, 1, 1)}  # I3D halves T after res2
    x = {"slow": _inputs(2, 32)["slow"][:, :2].repeat(2, axis=1)}
    outputs = model.build_eval_model()(x)
    assert sorted(outputs) == ["features", "logits", "probabilities"]
    assert outputs["features"].shape == (2, 256)
    probs = np.asarray(outputs["probabilities"])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-np.asarray(outputs["logits"]))), rtol=1e-5)


def test_classifier_errors():
    backbone = SlowFastBackbone(**TINY)
    with pytest.raises(ValueError, match="activation='relu'"):
        SlowFastVideoClassifier(backbone, num_classes=3, activation="relu")
    with pytest.raises(ValueError, match="num_classes=0"):
        SlowFastVideoClassifier(backbone, num_classes=0)
    with pytest.raises(ValueError, match="head_pool_size"):
        SlowFastVideoClassifier(backbone, num_classes=3, head_pool_size={"slow": (2, 7, 7)})
    model = SlowFastVideoClassifier(backbone, num_classes=3)  # head fixed from a 224 crop
    with pytest.raises(ValueError, match="too small for the head.*64px"):
        model(_inputs(1, 64))
    with pytest.raises(ValueError, match="keys"):
        model({"fast": _inputs(1, 64)["fast"]})


def test_mixed_precision_logits_are_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = SlowFastVideoClassifier(SlowFastBackbone(**TINY, image_size=32), num_classes=3)
        eval_model = model.build_eval_model()
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("head_projection").compute_dtype == "float16"
    for value in eval_model.output.values():
        assert value.dtype == "float32"


def test_keras_file_carries_the_clip_spec(tmp_path):
    """`build_model` attaches the preset's named clip spec (frames following the overrides);
    `.keras` save / `load_model` brings it back; a spec with other frames is refused."""
    from slowfast_tf import models
    from slowfast_tf.clip_spec import ClipSpec, get_clip_spec

    model = models.build_model("slowfast_r50_4x16", num_classes=3, **dict(TINY, alpha=8))
    assert ClipSpec.from_dict(model.clip_spec) == get_clip_spec("slowfast_4x16", num_frames=8)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert ClipSpec.from_dict(loaded.clip_spec) == get_clip_spec("slowfast_4x16", num_frames=8)
    assert loaded.get_config()["clip_spec"] == model.get_config()["clip_spec"]
    with pytest.raises(ValueError, match="`clip_spec` must give the backbone's frames"):
        SlowFastVideoClassifier(SlowFastBackbone(**TINY), num_classes=3,
                                clip_spec=ClipSpec(num_frames=16).to_dict())
    plain = SlowFastVideoClassifier(SlowFastBackbone(**TINY), num_classes=3)
    assert plain.clip_spec is None and plain.get_config()["clip_spec"] is None
