"""SavedModel serving signatures for SlowFast-family classifiers.

Two signatures, both ending in the same in-graph test-time preprocessing and eval head:

* `serving_default`: `frames` uint8 `[batch, T, H, W, 3]` RGB (any T, H, W; T is resampled to
  the model's clip length).
* `serve_examples`: `examples` string `[batch]` of serialized `tf.train.SequenceExample`s with one
  JPEG per frame under the feature list `image/encoded` (the project's TFRecord format).

Both return `probabilities` float32 `[batch, num_classes]` (mean over positions of softmax, the
PySlowFast eval head), `top_k_ids` int32 `[batch, k]` and `top_k_labels` string `[batch, k]`.

Why not `keras.Model.export`: Keras 3's `ExportArchive` tracks the Keras variables (its
`variables` / `trainable_variables` lists) *and* the raw `tf.Variable`s captured by the traced
functions (`_all_variables`). A Keras `Variable` is itself a `Trackable` that serializes its
wrapped `tf.Variable`, so the checkpoint holds every weight twice under two object paths and the
SavedModel is ~2x the weight bytes. Here the module tracks only the captured `tf.Variable`s, once,
and never the Keras model, so `variables/` is the weight bytes plus a small object-graph header.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import tensorflow as tf

from slowfast_tf.serving import preprocessing

FRAMES_KEY = "frames"
EXAMPLES_KEY = "examples"
OUTPUT_KEYS = ("probabilities", "top_k_ids", "top_k_labels")
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the serving graph needs to know about the model and the test-time view.

    Args:
        num_frames: int, clip length before pathway packing (SlowFast 8x8: 32, the fast T).
        alpha: int, fast/slow frame-rate ratio (1 for single-pathway models).
        pathways: tuple of str, the model's input keys (`("slow", "fast")`, `("slow",)`, ...).
        short_side: int, short side after resizing (PySlowFast TEST_CROP_SIZE 256).
        crop_size: int, center-crop side (256 as in PySlowFast's 3-crop test; 1 center crop here).
        top_k: int, number of `top_k_ids` / `top_k_labels` (clipped to num_classes).
    """

    num_frames: int
    alpha: int = 4
    pathways: tuple[str, ...] = ("slow", "fast")
    short_side: int = 256
    crop_size: int = 256
    top_k: int = 5

    def __post_init__(self):
        for name in ("num_frames", "alpha", "short_side", "crop_size", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if self.crop_size > self.short_side:
            raise ValueError(
                "`crop_size` must not exceed `short_side`. "
                f"Received: crop_size={self.crop_size}, short_side={self.short_side}"
            )
        if not self.pathways or set(self.pathways) - {"slow", "fast"}:
            raise ValueError(
                f"`pathways` must be a non-empty subset of ('slow', 'fast'). "
                f"Received: pathways={self.pathways!r}"
            )
        if set(self.pathways) == {"slow", "fast"} and self.num_frames % self.alpha:
            # The fast->slow lateral conv has temporal stride alpha; T_f must be a multiple of it.
            raise ValueError(
                "`num_frames` must be a multiple of `alpha` for a two-pathway model. "
                f"Received: num_frames={self.num_frames}, alpha={self.alpha}"
            )


def serving_config_from_model(model, **overrides) -> ServingConfig:
    """Read `num_frames`, `alpha` and `pathways` from a model's static input shapes.

    Args:
        model: a Keras model taking `{"slow": [B, T_s, H, W, 3], "fast": [B, T_f, H, W, 3]}` (or a
            single pathway).
        **overrides: any `ServingConfig` field; wins over what is read from the model.

    Returns:
        A `ServingConfig`.
    """
    inputs = model.input
    if not isinstance(inputs, dict):
        raise ValueError(
            "Expected a model whose inputs are a dict keyed by pathway ('slow'/'fast'). "
            f"Received: model.input={inputs!r}"
        )
    frames = {k: v.shape[1] for k, v in inputs.items()}
    pathways = tuple(p for p in ("slow", "fast") if p in frames)
    fields = {"pathways": pathways}
    main = "fast" if "fast" in frames else "slow"
    if frames[main] is not None:
        fields["num_frames"] = int(frames[main])
    if len(pathways) == 2 and frames["slow"] and frames["fast"]:
        fields["alpha"] = int(frames["fast"]) // int(frames["slow"])
    elif len(pathways) == 1:
        fields["alpha"] = 1
    fields.update(overrides)
    if "num_frames" not in fields:
        raise ValueError(
            "The model has no static clip length; pass `num_frames=`. "
            f"Received: input frames={frames}"
        )
    return ServingConfig(**fields)


def _probabilities_fn(model):
    """Returns `inputs -> float32 probabilities` using the model's eval head."""
    if hasattr(model, "build_eval_model"):
        # PySlowFast eval head: mean over positions of softmax (sigmoid) -- not softmax(mean logits).
        model = model.build_eval_model()

    def fn(inputs):
        out = model(inputs, training=False)
        if isinstance(out, dict):
            if "probabilities" not in out:
                raise ValueError(
                    f"Model output dict needs a 'probabilities' key. Received keys: {sorted(out)}"
                )
            return tf.cast(out["probabilities"], tf.float32)
        # A bare classifier returns logits (docs/DESIGN.md); softmax them in float32.
        return tf.nn.softmax(tf.cast(out, tf.float32), axis=-1)

    return fn


def read_labels(labels_file: str | None, num_classes: int) -> list[str]:
    """One label per line (index = line number); falls back to `"0"`, `"1"`, ... if no file."""
    if not labels_file:
        return [str(i) for i in range(num_classes)]
    with tf.io.gfile.GFile(labels_file) as f:
        labels = [line.rstrip("\r\n") for line in f]
    while labels and not labels[-1]:
        labels.pop()
    if len(labels) != num_classes:
        raise ValueError(
            f"The labels file must have one line per class ({num_classes}). "
            f"Received: {len(labels)} labels in labels_file={labels_file!r}"
        )
    return labels


def build_serving_module(model, config: ServingConfig, labels: list[str]) -> tf.Module:
    """Wraps `model` in a `tf.Module` with the two serving `tf.function`s.

    The Keras model is captured by closure only (never tracked), and the module tracks exactly the
    `tf.Variable`s the traced functions capture, so each weight is saved once.

    Args:
        model: a Keras classifier (`build_eval_model()` is used when present).
        config: a `ServingConfig`.
        labels: list of `num_classes` label strings, baked into the graph as a constant.

    Returns:
        A `tf.Module` with `serve_frames`, `serve_examples` (traced `tf.function`s),
        `model_variables` (the captured variables) and `labels_asset`.
    """
    probabilities_fn = _probabilities_fn(model)
    labels_const = tf.constant(labels, dtype=tf.string)
    k = min(config.top_k, len(labels))
    specs = {
        p: tf.TensorSpec(
            [config.num_frames // (config.alpha if p == "slow" and len(config.pathways) == 2 else 1),
             config.crop_size, config.crop_size, 3],
            tf.float32,
        )
        for p in config.pathways
    }

    def preprocess(frames):
        return preprocessing.eval_preprocess_clip(
            frames,
            num_frames=config.num_frames,
            short_side=config.short_side,
            crop_size=config.crop_size,
            alpha=config.alpha,
            pathways=config.pathways,
        )

    def predict(inputs):
        probs = probabilities_fn(inputs)
        if probs.shape[-1] is not None and probs.shape[-1] != len(labels):
            raise ValueError(
                f"The model has {probs.shape[-1]} classes but {len(labels)} labels were given."
            )
        top = tf.math.top_k(probs, k=k)
        ids = tf.cast(top.indices, tf.int32)
        return {
            "probabilities": tf.identity(probs, name="probabilities"),
            "top_k_ids": tf.identity(ids, name="top_k_ids"),
            "top_k_labels": tf.gather(labels_const, ids, name="top_k_labels"),
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=FRAMES_KEY)]
    )
    def serve_frames(frames):
        shape = tf.shape(frames)
        # A real check at run time: static shapes only fix the rank and the channel count.
        with tf.control_dependencies(
            [
                tf.debugging.assert_positive(
                    shape[1:4],
                    message="`frames` must be uint8 [batch, T, H, W, 3] with T, H, W >= 1",
                )
            ]
        ):
            frames = tf.identity(frames)
        inputs = tf.map_fn(preprocess, frames, fn_output_signature=specs)
        return predict(inputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_KEY)])
    def serve_examples(examples):
        def one(serialized):
            return preprocess(preprocessing.decode_sequence_example(serialized))

        inputs = tf.map_fn(one, examples, fn_output_signature=specs)
        return predict(inputs)

    module = tf.Module(name="slowfast_serving")
    concrete = [serve_frames.get_concrete_function(), serve_examples.get_concrete_function()]
    seen, captured = set(), []
    for fn in concrete:
        for v in fn.variables:
            if id(v) not in seen:
                seen.add(id(v))
                captured.append(v)
    module.serve_frames = serve_frames
    module.serve_examples = serve_examples
    module.model_variables = captured
    # The labels also travel as a plain-text asset (assets/labels.txt) for humans and tools.
    tmp = tempfile.mkdtemp(prefix="slowfast_labels_")
    labels_path = os.path.join(tmp, "labels.txt")
    with open(labels_path, "w") as f:
        f.write("\n".join(labels) + "\n")
    module.labels_asset = tf.saved_model.Asset(labels_path)
    return module


def save_serving_model(model, export_dir: str, config: ServingConfig, labels: list[str]) -> str:
    """Builds the serving module and writes a SavedModel to `export_dir` (must not exist).

    Returns:
        `export_dir`.
    """
    if tf.io.gfile.exists(export_dir):
        raise ValueError(f"`export_dir` already exists. Received: export_dir={export_dir!r}")
    module = build_serving_module(model, config, labels)
    signatures = {
        DEFAULT_SIGNATURE: module.serve_frames.get_concrete_function(),
        EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir
