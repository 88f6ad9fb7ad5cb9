"""Training and frame-mAP evaluation of AVA detectors (``train.py`` dispatches here for them).

``train.py`` keeps its flags, strategies, resume (``BackupAndRestore``), checkpoints and
TensorBoard; for a detector preset (``is_detector``) it calls `build_data_config`,
`build_detector`, `build_dataset`, `compile_detector`, `fit` and `evaluate` from this module.

Loss (PySlowFast ``BCELoss`` on the sigmoid probabilities, ``reduction="mean"`` over the real
boxes of the batch): the per-box, per-class binary cross-entropy of the logits, averaged over the
**valid** boxes only. The box mask travels with the labels as one extra column
(`pack_labels`), so padding rows never enter the loss, whatever their labels or logits.

Evaluation (``--mode=eval``): the test pipeline's boxes (detector boxes above the score threshold,
as PySlowFast), the sigmoid probabilities of every valid box written as the official detections
CSV (``ava_files.write_detections``: one row per box and label-map class), then frame-mAP@0.5
(``ava_eval``) with per-class AP, printed and written to ``model_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from slowfast_tf import compat
from slowfast_tf.data.ava import ava_files
from slowfast_tf.data.ava.ava_pipeline import AVA_DATA_PRESETS, AvaDataConfig, build_ava_dataset
from slowfast_tf.training import ava_eval, optimizer, strategy, trainer
from slowfast_tf.utils import fileio


def is_detector(model_name: str) -> bool:
    """True for the AVA detector presets (``SlowFastDetector``)."""
    from slowfast_tf.models.slowfast import slowfast_detector_presets

    return model_name in slowfast_detector_presets.list_presets()


def build_data_config(model_name: str, data_preset: str | None, num_classes: int,
                      overrides: dict) -> AvaDataConfig:
    """The AVA data config: ``data_preset`` (default: the one named like the preset's clip spec)
    with ``overrides``."""
    if not data_preset and is_detector(model_name):
        from slowfast_tf.models.slowfast import slowfast_detector_presets

        data_preset = slowfast_detector_presets.get_preset(model_name).clip_spec
    name = data_preset
    if name not in AVA_DATA_PRESETS:
        raise ValueError(f"Unknown AVA data preset; expected one of {sorted(AVA_DATA_PRESETS)}. "
                         f"Received: data_preset={name!r}")
    fields = {f.name for f in dataclasses.fields(AvaDataConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown AVA data overrides {unknown}; expected some of {sorted(fields)}. "
                         f"Received: {overrides}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(AVA_DATA_PRESETS[name], num_classes=num_classes, **overrides)


def frames_per_pathway(config: AvaDataConfig) -> dict:
    slow = config.num_frames // config.alpha if "fast" in config.pathways else config.num_frames
    return {p: (slow if p == "slow" else config.num_frames) for p in config.pathways}


def build_detector(model_name: str, num_classes: int, data_config: AvaDataConfig,
                   overrides: dict) -> keras.Model:
    """The detector with ``max_boxes`` and frames from the data config; checks they agree."""
    from slowfast_tf.models import build_model

    overrides = dict(overrides)
    overrides.setdefault("num_frames", data_config.num_frames)
    overrides.setdefault("max_boxes", data_config.max_boxes)
    return trainer.build_with_clip_spec(
        lambda **spec: build_model(model_name, num_classes=num_classes, **overrides, **spec),
        data_config.clip_spec,
    )


def pack_labels(labels, box_mask):
    """``[B, M, C]`` labels + ``[B, M]`` mask -> ``[B, M, C + 1]`` (mask last), the loss target."""
    return tf.concat([tf.cast(labels, tf.float32), tf.cast(box_mask, tf.float32)[..., None]], -1)


def masked_bce(y_true, y_pred):
    """Mean sigmoid BCE of logits ``y_pred [B, M, C]`` over valid boxes (``y_true[..., -1]``) and
    classes; 0 for a batch without any valid box."""
    ops = keras.ops
    labels, mask = y_true[..., :-1], y_true[..., -1]
    logits = ops.cast(y_pred, "float32")
    per_entry = ops.maximum(logits, 0.0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    per_box = ops.mean(per_entry, axis=-1) * mask
    return ops.sum(per_box) / ops.maximum(ops.sum(mask), 1.0)


class MaskedBCE(keras.losses.Loss):
    """`masked_bce` as a Keras loss (a scalar per batch: Keras's reduction leaves it as is)."""

    def __init__(self, name="masked_bce", **kwargs):
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)

    def call(self, y_true, y_pred):
        return masked_bce(y_true, y_pred)


def build_dataset(pattern: str, config: AvaDataConfig, mode: str, batch_size: int, seed=None,
                  shuffle_buffer: int = 256):
    """``build_ava_dataset``; train elements become ``(inputs, packed labels)``."""
    if mode == "train":
        ds = build_ava_dataset(pattern, config, "train", batch_size, shuffle_buffer, seed)
        return ds.map(lambda x, y: (x, pack_labels(y, x["box_mask"])))
    return build_ava_dataset(pattern, config, mode, batch_size)


def compile_detector(model: keras.Model, recipe: trainer.RecipeConfig, steps_per_epoch: int):
    """SGD with the recipe's schedule and weight decay; masked BCE. Call under the strategy scope."""
    opt = optimizer.build_optimizer(
        model, recipe.learning_rate(steps_per_epoch), momentum=recipe.momentum,
        nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
        weight_decay_mode=recipe.weight_decay_mode, clipnorm=recipe.clipnorm,
    )
    model.compile(optimizer=opt, loss=MaskedBCE(), jit_compile=recipe.jit_compile)
    return opt


def fit(model, train_dataset, recipe, model_dir, steps_per_epoch, precise_bn_dataset=None,
        tensorboard=True, verbose="auto"):
    """``trainer.fit``'s loop (same callbacks: resume, checkpoints, logs, final weights)."""
    callbacks = trainer.build_callbacks(model_dir, steps_per_epoch, recipe, precise_bn_dataset,
                                        tensorboard)
    if compat.model_strategy(model) is not None:
        label = keras.KerasTensor((None, model.max_boxes, model.num_classes + 1), "float32")
        compat.build_from_specs(model, (model.input, label))
    history = model.fit(train_dataset, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, shuffle=False, verbose=verbose)
    if strategy.is_chief():
        trainer.save_final(model, model_dir)
    return history


def default_eval_files(test_pattern: str, groundtruth=None, label_map=None, exclusions=None):
    """convert-ava's files next to the test shards: ``{split}_groundtruth.csv``,
    ``label_map.pbtxt``, ``{split}_exclusions.csv`` (split = shard name before the first '-')."""
    folder = os.path.dirname(test_pattern)
    split = os.path.basename(test_pattern).split("-")[0]
    groundtruth = groundtruth or os.path.join(folder, f"{split}_groundtruth.csv")
    label_map = label_map or os.path.join(folder, "label_map.pbtxt")
    if exclusions is None:
        candidate = os.path.join(folder, f"{split}_exclusions.csv")
        exclusions = candidate if tf.io.gfile.exists(candidate) else None
    for name, path in (("--ava_groundtruth", groundtruth), ("--ava_label_map", label_map)):
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"AVA evaluation needs {name}; not found. Received: {path!r}")
    return groundtruth, label_map, exclusions


def predict_detections(eval_model, dataset, class_ids, num_batches=None) -> list:
    """Runs the eval model on ``(inputs, labels, meta)`` batches -> detection rows per valid box."""
    predict = tf.function(lambda x: eval_model(x, training=False)["probabilities"])
    rows = []
    for i, (inputs, _, meta) in enumerate(dataset):
        if num_batches is not None and i >= num_batches:
            break
        probs = predict(inputs).numpy()
        mask = inputs["box_mask"].numpy() > 0
        videos = [v.decode() for v in meta["video_id"].numpy()]
        secs = meta["sec"].numpy()
        boxes = meta["ori_boxes"].numpy()
        b, m = np.nonzero(mask)
        keys = [(videos[j], int(secs[j])) for j in b]
        rows += ava_files.detections_from_scores(keys, boxes[b, m], probs[b, m], class_ids)
    return rows


def evaluate(eval_model, dataset, groundtruth_csv, label_map_pbtxt, exclusions_csv=None,
             output_dir=None, num_batches=None, protocol="activitynet") -> dict:
    """Detections CSV + frame-mAP@0.5 (per-class AP) of ``eval_model`` on a test dataset.

    Writes ``output_dir/detections.csv`` and ``output_dir/ava_eval.json`` when given.

    Returns:
        ``{"summary": {"frame_mAP", "num_boxes", "num_detection_rows"}, "metrics": {...}}``.
    """
    label_map = ava_files.read_label_map(label_map_pbtxt)
    rows = predict_detections(eval_model, dataset, sorted(label_map), num_batches)
    if not rows:
        raise ValueError("The test set gave no boxes to evaluate (check --test_file_pattern and "
                         "the detection score threshold). Received: 0 detections")
    excluded = ava_files.read_exclusions(exclusions_csv) if exclusions_csv else set()
    metrics = ava_eval.evaluate(ava_files.read_annotations(groundtruth_csv), rows, label_map,
                                excluded, protocol)
    summary = {"frame_mAP": metrics[ava_eval.MAP_KEY],
               "num_boxes": len(rows) // len(label_map), "num_detection_rows": len(rows)}
    result = {"summary": summary,
              "metrics": {k: (None if np.isnan(v) else v) for k, v in metrics.items()}}
    if output_dir:
        # Exact scores: the official tool then reproduces this mAP (4 decimals made ties of a
        # barely trained model's near-equal scores: 0.664 from the file vs 0.650 in memory).
        ava_files.write_detections(os.path.join(output_dir, "detections.csv"), rows,
                                   score_decimals=None)
        fileio.atomic_write_text(os.path.join(output_dir, "ava_eval.json"),
                                 json.dumps(result, indent=2))
    for key, value in metrics.items():
        logging.info("%s: %s", key, value)
    return result
