"""TF Serving signature of AVA detectors: uint8 frames + normalised person boxes -> per-box actions.

``serving_default`` takes

* ``frames``: uint8 ``[1, T, H, W, 3]``, the clip centred on the keyframe (resampled to the
  model's T with `preprocessing.temporal_subsample` when T differs);
* ``boxes``: float32 ``[N, 4]`` person boxes ``(x1, y1, x2, y2)`` normalised to the frame,
  ``1 <= N <= max_boxes``;

and returns ``probabilities`` ``[N, num_classes]`` (sigmoid), ``top_k_ids`` int32 ``[N, k]`` (0-based
columns: AVA action id = column + 1) and ``top_k_labels`` ``[N, k]``. The preprocessing is the
evaluation path of ``ava_pipeline.preprocess_keyframe`` (boxes to pixels and clipped, short side
to ``test_size`` with the boxes, normalise, PackPathway) built from the same functions. Boxes
outside ``[0, 1]``, inverted or empty, or more than ``max_boxes`` fail the request with a message
naming the rule (``INVALID_ARGUMENT``).

``save_detection_model(..., warmup_model_name=name)`` also writes
``assets.extra/tf_serving_warmup_requests`` (`warmup_requests`), which TF Serving replays at load.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from slowfast_tf.data import transforms
from slowfast_tf.data.ava import ava_pipeline
from slowfast_tf.serving import preprocessing, signatures, tfserving

FRAMES_KEY = "frames"
BOXES_KEY = "boxes"
DEFAULT_SIGNATURE = "serving_default"


def _check_boxes(boxes, max_boxes: int):
    n = tf.shape(boxes)[0]
    checks = [
        tf.debugging.assert_positive(n, message="`boxes` must hold at least one [x1, y1, x2, y2] row"),
        tf.debugging.assert_less_equal(
            n, max_boxes, message=f"`boxes` holds more than max_boxes={max_boxes} rows"),
        tf.debugging.assert_greater_equal(
            tf.reduce_min(boxes), 0.0,
            message="`boxes` must be normalised: every coordinate in [0, 1]"),
        tf.debugging.assert_less_equal(
            tf.reduce_max(boxes), 1.0, message="`boxes` must be normalised: every coordinate in [0, 1]"),
        tf.debugging.assert_positive(
            tf.reduce_min(tf.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])),
            message="`boxes` rows must have x2 > x1 and y2 > y1"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(boxes)


def preprocess(frames, boxes, config: ava_pipeline.AvaDataConfig):
    """uint8 ``[T, H, W, 3]`` + normalised ``[N, 4]`` -> model inputs (batch 1, ``max_boxes`` slots)."""
    frames = preprocessing.temporal_subsample(frames, config.num_frames)
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    px = ava_pipeline.clip_boxes_to_image(ava_pipeline.boxes_to_pixels(boxes, h, w), h, w)
    frames, px = ava_pipeline.scale_short_side_with_boxes(frames, px, config.test_size)
    shape = tf.shape(frames)
    px = ava_pipeline.clip_boxes_to_image(px, shape[1], shape[2])
    frames = transforms.normalize(frames, config.mean, config.std)
    px, mask, _ = ava_pipeline.pad_boxes(px, tf.zeros([tf.shape(px)[0], 1]), config.max_boxes)
    norm = ava_pipeline.pixels_to_boxes(px, shape[1], shape[2]) * mask[:, None]
    inputs = transforms.pack_pathways(frames[None], config.alpha, config.pathways)
    inputs.update(boxes=norm[None], box_mask=mask[None])
    return inputs


def build_detection_module(model, config: ava_pipeline.AvaDataConfig, labels: list[str],
                           top_k: int = 5):
    """Traces ``serving_default`` for a ``SlowFastDetector``; returns ``(module, signatures)``."""
    if model.max_boxes is None or model.max_boxes != config.max_boxes:
        raise ValueError("The detector must have a static max_boxes equal to the data config's. "
                         f"Received: model.max_boxes={model.max_boxes}, "
                         f"config.max_boxes={config.max_boxes}")
    if len(labels) != model.num_classes:
        raise ValueError(f"The model has {model.num_classes} classes but {len(labels)} labels were "
                         f"given. Received: {len(labels)} labels")
    eval_model = model.build_eval_model()
    k = min(top_k, len(labels))
    table = tf.constant(labels, dtype=tf.string)

    @tf.function(
        input_signature=[tf.TensorSpec([1, None, None, None, 3], tf.uint8, name=FRAMES_KEY),
                         tf.TensorSpec([None, 4], tf.float32, name=BOXES_KEY)],
        autograph=False,
    )
    def serve(frames, boxes):
        frames = tf.ensure_shape(frames, [1, None, None, None, 3])
        boxes = _check_boxes(tf.ensure_shape(boxes, [None, 4]), config.max_boxes)
        n = tf.shape(boxes)[0]
        probs = eval_model(preprocess(frames[0], boxes, config), training=False)["probabilities"]
        probs = probs[0, :n]
        ids = tf.cast(tf.math.top_k(probs, k=k).indices, tf.int32)
        return {"probabilities": probs, "top_k_ids": ids, "top_k_labels": tf.gather(table, ids)}

    concrete = serve.get_concrete_function()
    module = tf.Module(name="slowfast_detection_serving")
    module.model_variables = list({id(v): v for v in concrete.variables}.values())
    return module, {DEFAULT_SIGNATURE: concrete,
                    signatures.METADATA_SIGNATURE: signatures.metadata_signature(config.clip_spec)}


def warmup_requests(model_name: str, config: ava_pipeline.AvaDataConfig) -> list:
    """One ``PredictRequest`` shaped like what the client sends for one keyframe.

    uint8 frames ``[1, T, S, 4S/3, 3]`` (the model's T, short side ``config.test_size``, a 4:3
    frame as AVA's mostly are) and ``min(2, max_boxes)`` boxes; a fixed seed, so the warm-up file
    is reproducible.
    """
    rng = np.random.default_rng(0)
    h = config.test_size
    frames = rng.integers(0, 256, size=(1, config.num_frames, h, h * 4 // 3, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.2, 0.45, 0.95], [0.5, 0.1, 0.9, 0.9]], np.float32)
    boxes = boxes[: config.max_boxes]
    return [tfserving.predict_request(model_name, {FRAMES_KEY: frames, BOXES_KEY: boxes},
                                      DEFAULT_SIGNATURE)]


def save_detection_model(model, export_dir: str, config: ava_pipeline.AvaDataConfig,
                         labels: list[str], top_k: int = 5,
                         warmup_model_name: str | None = None) -> str:
    """Writes the detector SavedModel (``export_dir`` must not exist); returns ``export_dir``.

    With ``warmup_model_name`` (the name in ``models.config``), also writes
    ``assets.extra/tf_serving_warmup_requests`` before the SavedModel is moved into place.
    """
    if tf.io.gfile.exists(export_dir):
        raise ValueError(f"`export_dir` already exists. Received: export_dir={export_dir!r}")
    module, serving_signatures = build_detection_module(model, config, labels, top_k)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    # A hidden sibling: TF Serving ignores non-numeric dirs, so it never sees a partial version.
    with tempfile.TemporaryDirectory(dir=parent, prefix=".tmp-") as tmp:
        staged = os.path.join(tmp, "model")
        tf.saved_model.save(module, staged, signatures=serving_signatures)
        if warmup_model_name is not None:
            tfserving.write_warmup_requests(staged, warmup_requests(warmup_model_name, config))
        os.rename(staged, export_dir)  # A complete SavedModel or none.
    return export_dir


def export_from_flags(model, f) -> str:
    """``export.py`` for a detector: ``<output_dir>/<model_name>/<version>/`` + models.config.

    Uses ``--data_preset`` (an AVA preset; default: the model's, e.g. ``ava_slowfast_32x2``),
    ``--labels_file``, ``--top_k``, ``--version``, ``--serving_base_path``, ``--warmup``. Returns the
    export dir.
    """
    from slowfast_tf.serving import tfserving
    from slowfast_tf.training import detection

    # Clip length, pathways and box slots come from the model; the rest from the data preset.
    frames = {p: model.input[p].shape[1] for p in model.pathways}
    overrides = {"max_boxes": model.max_boxes or 32, "pathways": list(model.pathways),
                 "num_frames": max(frames.values())}
    if len(frames) == 1:
        overrides["alpha"] = 1
    config = detection.build_data_config(model.name, f.data_preset, model.num_classes, overrides)
    labels = signatures.read_labels(f.labels_file, model.num_classes)
    tfserving.validate_model_name(f.model_name)
    model_base = os.path.join(f.output_dir, f.model_name)
    _, final_dir = tfserving.resolve_version_dir(model_base, f.version or None)
    save_detection_model(model, final_dir, config, labels, f.top_k,
                         warmup_model_name=f.model_name if f.warmup else None)
    tfserving.write_models_config(os.path.join(f.output_dir, "models.config"),
                                  {f.model_name: f.serving_base_path or os.path.abspath(model_base)})
    return final_dir
