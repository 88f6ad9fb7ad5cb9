"""Shared test harness for video models (keras-hub ``run_vision_backbone_test`` style).

Every model family calls ``run_video_backbone_test`` / ``run_video_classifier_test`` on a tiny
config. Each check asserts real behaviour: output shapes, a config -> JSON -> ``from_config``
round trip, ``.keras`` save/reload equality, ``predict`` on a ``tf.data.Dataset``,
``mixed_float16`` dtypes and that one training step reaches every trainable variable.

The harness runs on the TensorFlow backend (``tf.data`` and ``tf.GradientTape``); model code
itself is backend-free.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from slowfast_tf import compat

__all__ = ["run_video_backbone_test", "run_video_classifier_test", "run_video_detector_test"]


def _as_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"output": outputs}


def _check_shapes(outputs, expected_output_shape):
    outputs = _as_dict(outputs)
    expected = _as_dict(expected_output_shape)
    actual = {k: tuple(v.shape) for k, v in outputs.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    assert actual == expected, f"output shapes {actual} != expected {expected}"


def _assert_allclose(a, b, atol=1e-5, rtol=1e-5, what=""):
    a, b = _as_dict(a), _as_dict(b)
    assert set(a) == set(b), f"{what}: keys {sorted(a)} != {sorted(b)}"
    for key in a:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a[key]),
            keras.ops.convert_to_numpy(b[key]),
            atol=atol,
            rtol=rtol,
            err_msg=f"{what}: output {key!r} differs",
        )


def _fresh_kwargs(init_kwargs):
    """Rebuilds nested Keras objects (a classifier's backbone) so they pick up the current
    dtype policy and do not share weights with the caller's instance."""
    out = {}
    for key, value in init_kwargs.items():
        if isinstance(value, keras.layers.Layer):
            value = value.__class__.from_config(value.get_config())
        out[key] = value
    return out


def _run_config_test(model, cls):
    config = model.get_config()
    # The full serialized form must be JSON (no tuples-as-keys, numpy scalars or classes).
    serialized = keras.saving.serialize_keras_object(model)
    json_config = json.loads(json.dumps(serialized))
    revived = keras.saving.deserialize_keras_object(json_config)
    assert isinstance(revived, cls), f"{type(revived)} is not {cls}"
    revived_config = revived.get_config()
    assert json.loads(json.dumps(revived_config)) == json.loads(json.dumps(config)), (
        "get_config -> from_config is not a round trip"
    )
    assert revived.count_params() == model.count_params()


def _run_saving_test(model, input_data):
    expected = model(input_data, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    _assert_allclose(expected, restored(input_data, training=False), what=".keras reload")


def _run_predict_test(model, input_data):
    expected = model(input_data, training=False)
    dataset = tf.data.Dataset.from_tensor_slices(input_data).batch(1)
    predicted = model.predict(dataset, verbose=0)
    _assert_allclose(expected, predicted, atol=1e-4, rtol=1e-4, what="predict(tf.data)")


def _run_mixed_precision_test(cls, init_kwargs, input_data, float32_outputs):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = cls(**_fresh_kwargs(init_kwargs))
        # TF's CPU kernels have no float16 MaxPool3D/Conv3D, so on CPU the check is symbolic
        # (the dtypes Keras infers through the graph); with a GPU it also runs the model.
        if tf.config.list_physical_devices("GPU"):
            outputs = _as_dict(model(input_data, training=False))
        else:
            outputs = _as_dict(model.output)
    finally:
        keras.config.set_dtype_policy(previous)
    for weight in model.weights:
        assert weight.dtype == "float32", f"variable {weight.path} is {weight.dtype}"
    convs = [layer for layer in compat.flatten_layers(model) if isinstance(layer, keras.layers.Conv3D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    for key, value in outputs.items():
        want = "float32" if float32_outputs else "float16"
        assert keras.backend.standardize_dtype(value.dtype) == want, f"{key}: {value.dtype}"
        if not isinstance(value, keras.KerasTensor):
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(value))), f"{key} not finite"


def _run_training_test(model, input_data, loss_fn):
    # Zero-init gammas (``ZERO_INIT_FINAL_BN``) make every block start as the identity, which
    # blocks the gradient to the convs before them at step 0. Give them a non-zero value so the
    # test proves every variable is *connected* to the loss.
    for weight in model.trainable_weights:
        if weight.path.endswith("gamma") and not np.any(keras.ops.convert_to_numpy(weight)):
            weight.assign(keras.ops.ones_like(weight))
    inputs = {k: tf.convert_to_tensor(v) for k, v in input_data.items()}
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = loss_fn(outputs)
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [
        w.path
        for w, g in zip(model.trainable_weights, grads)
        if g is None or not np.any(keras.ops.convert_to_numpy(g))
    ]
    assert not missing, f"no gradient for {len(missing)} variables, e.g. {missing[:5]}"
    optimizer = keras.optimizers.SGD(0.01)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    changed = [
        not np.array_equal(b, keras.ops.convert_to_numpy(w))
        for b, w in zip(before, model.trainable_weights)
    ]
    assert any(changed), "an optimizer step changed no variable"


def _backbone_loss(outputs):
    # A fixed random projection of every endpoint, so no endpoint's gradient cancels out.
    loss = 0.0
    for i, key in enumerate(sorted(_as_dict(outputs))):
        value = tf.cast(_as_dict(outputs)[key], "float32")
        weights = tf.random.stateless_normal(tf.shape(value), seed=(i, 1))
        loss += tf.reduce_mean(tf.square(value) * weights)
    return loss


def _run_standard_checks(
    model, cls, init_kwargs, input_data, loss_fn, *, float32_outputs, saving, predict,
    mixed_precision, training,
):
    """The checks every model test shares: config round trip, then the optional ones."""
    _run_config_test(model, cls)
    if saving:
        _run_saving_test(model, input_data)
    if predict:
        _run_predict_test(model, input_data)
    if mixed_precision:
        _run_mixed_precision_test(cls, init_kwargs, input_data, float32_outputs=float32_outputs)
    if training:
        _run_training_test(model, input_data, loss_fn)


def run_video_backbone_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    *,
    run_saving_test=True,
    run_predict_test=True,
    run_mixed_precision_test=True,
    run_training_test=True,
):
    """Runs the standard backbone checks and returns the model built from ``init_kwargs``.

    Args:
        cls: a ``keras.Model`` subclass with full ``get_config`` / ``from_config``.
        init_kwargs: dict, constructor kwargs of a tiny config.
        input_data: dict ``{pathway: np.ndarray [B, T, H, W, 3]}`` (B >= 2 so BN trains).
        expected_output_shape: dict ``{endpoint: shape}`` (or one shape for a tensor output).
        run_saving_test: bool, ``.keras`` save -> load -> allclose.
        run_predict_test: bool, ``predict`` on a ``tf.data.Dataset`` equals a direct call.
        run_mixed_precision_test: bool, ``mixed_float16``: float32 variables, float16 convs
            and float16 endpoints.
        run_training_test: bool, a gradient reaches every trainable variable.

    Returns:
        The model instance.
    """
    model = cls(**init_kwargs)
    _check_shapes(model(input_data, training=False), expected_output_shape)
    _run_standard_checks(
        model, cls, init_kwargs, input_data, _backbone_loss, float32_outputs=False,
        saving=run_saving_test, predict=run_predict_test,
        mixed_precision=run_mixed_precision_test, training=run_training_test,
    )
    return model


def run_video_classifier_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    *,
    run_saving_test=True,
    run_predict_test=True,
    run_mixed_precision_test=True,
    run_training_test=True,
):
    """Runs the standard classifier checks and returns the model built from ``init_kwargs``.

    Same checks as ``run_video_backbone_test``; the classifier must output float32 logits
    ``[B, num_classes]`` even under ``mixed_float16``, and the training check uses a sparse
    categorical cross-entropy on random labels. If the model has ``build_eval_model()``, its
    output dict must contain ``logits`` equal to the classifier output and ``probabilities``
    whose rows sum to 1 for a softmax head, and it must share (not copy) the weights.

    Args: as ``run_video_backbone_test``; ``expected_output_shape`` is ``(B, num_classes)``.

    Returns:
        The model instance.
    """
    model = cls(**init_kwargs)
    logits = model(input_data, training=False)
    _check_shapes(logits, expected_output_shape)
    if hasattr(model, "build_eval_model"):
        eval_model = model.build_eval_model()
        model_ids = {id(w) for w in model.weights}
        assert all(id(w) in model_ids for w in eval_model.weights), "eval model copies weights"
        eval_outputs = eval_model(input_data, training=False)
        _assert_allclose(logits, eval_outputs["logits"], what="eval logits")
        probabilities = keras.ops.convert_to_numpy(eval_outputs["probabilities"])
        assert probabilities.shape == tuple(expected_output_shape)
        if getattr(model, "activation", "softmax") == "softmax":
            np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    batch, num_classes = expected_output_shape
    labels = np.arange(batch) % num_classes

    def loss_fn(outputs):
        return tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)
        )

    _run_standard_checks(
        model, cls, init_kwargs, input_data, loss_fn, float32_outputs=True,
        saving=run_saving_test, predict=run_predict_test,
        mixed_precision=run_mixed_precision_test, training=run_training_test,
    )
    return model


def run_video_detector_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    *,
    run_saving_test=True,
    run_predict_test=True,
    run_mixed_precision_test=True,
    run_training_test=True,
):
    """Runs the standard checks on a box-level detector and returns the model.

    ``input_data`` holds the clips plus ``boxes`` ``[B, M, 4]`` and ``box_mask`` ``[B, M]``;
    the output is float32 logits ``[B, M, num_classes]`` that must be 0 on padding rows. If the
    model has ``build_eval_model()``, its ``logits`` must equal the model output, its
    ``probabilities`` must lie in [0, 1] and be 0 on padding rows, and it must share the
    weights. The training check uses a sigmoid cross-entropy on random multi-hot targets over
    the real boxes only.

    Args: as ``run_video_backbone_test``; ``expected_output_shape`` is ``(B, M, classes)``.

    Returns:
        The model instance.
    """
    model = cls(**init_kwargs)
    logits = model(input_data, training=False)
    _check_shapes(logits, expected_output_shape)
    padding = np.asarray(input_data["box_mask"]) <= 0
    assert padding.any() and not padding.all(), "input_data must mix real and padding boxes"
    assert not np.any(keras.ops.convert_to_numpy(logits)[padding]), "padding rows are not 0"
    if hasattr(model, "build_eval_model"):
        eval_model = model.build_eval_model()
        model_ids = {id(w) for w in model.weights}
        assert all(id(w) in model_ids for w in eval_model.weights), "eval model copies weights"
        eval_outputs = eval_model(input_data, training=False)
        _assert_allclose(logits, eval_outputs["logits"], what="eval logits")
        probabilities = keras.ops.convert_to_numpy(eval_outputs["probabilities"])
        assert probabilities.shape == tuple(expected_output_shape)
        assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
        assert not np.any(probabilities[padding]), "padding probabilities are not 0"
    targets = np.random.default_rng(0).integers(0, 2, size=expected_output_shape).astype("float32")
    weights = (~padding).astype("float32")[..., None]

    def loss_fn(outputs):
        per_class = tf.nn.sigmoid_cross_entropy_with_logits(targets, tf.cast(outputs, "float32"))
        return tf.reduce_sum(per_class * weights) / tf.reduce_sum(weights)

    _run_standard_checks(
        model, cls, init_kwargs, input_data, loss_fn, float32_outputs=True,
        saving=run_saving_test, predict=run_predict_test,
        mixed_precision=run_mixed_precision_test, training=run_training_test,
    )
    return model
