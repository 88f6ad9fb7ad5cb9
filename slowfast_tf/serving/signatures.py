"""SavedModel serving signatures for SlowFast-family classifiers.

Two signatures, both ending in the same in-graph test-time preprocessing and eval head:

* `serving_default`: `frames` uint8 `[batch, T, H, W, 3]` RGB (any T, H, W; T is resampled to
  the model's clip length).
* `serve_examples`: `examples` string `[batch]` of serialized `tf.train.SequenceExample`s with one
  JPEG per frame under the feature list `image/encoded` (the project's TFRecord format).

Both return `probabilities` float32 `[batch, num_classes]` (mean over positions of softmax, the
PySlowFast eval head), `top_k_ids` int32 `[batch, k]` and `top_k_labels` string `[batch, k]`.

The model's clip settings travel with the SavedModel so that a client needs no clip flags:

* the `metadata` signature: input `dummy` int32 `[batch]` (any values, e.g. `[0]`; it exists
  because TF Serving's server-side batching needs a batched input), output `clip_spec` string
  `[batch]`, the `ClipSpec` JSON (`slowfast_tf/clip_spec.py`), one copy per row. The client asks
  for it first (`client.fetch_clip_spec`); `clip_spec_from_metadata` parses a reply.
* `assets/clip_spec.json`: the same JSON as a file, for tools that read the export directory.

Both check the request against the export's limits (`ServingConfig.max_*`) before any frame is
decoded or resized: `serve_examples` reads only the JPEG headers (`extract_jpeg_shape`) to learn
each frame's size, so a small request that declares huge frames fails before any pixel is decoded
instead of allocating gigabytes. A batch of 0 is rejected too.

Why not `keras.Model.export`: Keras 3's `ExportArchive` tracks the Keras variables (its
`variables` / `trainable_variables` lists) *and* the raw `tf.Variable`s captured by the traced
functions (`_all_variables`). A Keras `Variable` is itself a `Trackable` that serializes its
wrapped `tf.Variable`, so the checkpoint holds every weight twice under two object paths and the
SavedModel is ~2x the weight bytes. Here the module tracks only the captured `tf.Variable`s, once,
and never the Keras model, so `variables/` is the weight bytes plus a small object-graph header.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

import tensorflow as tf

from slowfast_tf import clip_spec as clip_spec_lib
from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.data import DataConfig, records
from slowfast_tf.serving import preprocessing

FRAMES_KEY = "frames"
EXAMPLES_KEY = "examples"
OUTPUT_KEYS = ("probabilities", "top_k_ids", "top_k_labels")
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
METADATA_SIGNATURE = "metadata"
METADATA_INPUT_KEY = "dummy"
CLIP_SPEC_KEY = "clip_spec"


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the serving graph needs: the model's `ClipSpec` plus the answer size and request limits.

    The serving view is the single-crop test view of `clip` (`ClipSpec.short_side`, centre crop of
    `test_crop`); `clip` is also what the `metadata` signature and `assets/clip_spec.json` return,
    with `test_short_side` resolved to a number.

    Args:
        clip: `ClipSpec`, the model's clip settings (usually read from the model,
            `serving_config_from_model`).
        top_k: int, number of `top_k_ids` / `top_k_labels` (clipped to num_classes).
        max_frame_pixels: int, largest `H * W` of one frame (default 4096 * 4096: 4K video passes,
            an 8000 x 8000 JPEG does not).
        max_request_frames: int, most frames in one request: `batch * T` for `frames`, the
            number of JPEGs over all `examples` (default 4096, 2 min 16 s at 30 fps).
        max_decoded_bytes: int, most uint8 bytes the request's frames take once decoded: the
            `frames` tensor itself, or for `examples` at most `min(N, num_frames)` decoded frames
            per record at the record's largest frame size (default 1 GiB). The resize that
            follows works in float32, 4 bytes per value on top of these.
    """

    clip: ClipSpec
    top_k: int = 5
    max_frame_pixels: int = 4096 * 4096
    max_request_frames: int = 4096
    max_decoded_bytes: int = 2**30

    def __post_init__(self):
        if not isinstance(self.clip, ClipSpec):
            raise ValueError(f"`clip` must be a ClipSpec. Received: clip={self.clip!r}")
        clip = self.clip.clip_spec  # the clip part of a DataConfig
        for name in ("top_k", "max_frame_pixels", "max_request_frames", "max_decoded_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if clip.test_crop > clip.short_side:
            raise ValueError(
                "The serving view's centre crop must fit its short side: `test_crop` must not "
                f"exceed the clip spec's short side. Received: test_crop={clip.test_crop}, "
                f"short_side={clip.short_side}"
            )
        # The short side explicit: a client in any language reads `test_short_side` from the
        # metadata without knowing the PySlowFast jitter rule.
        object.__setattr__(self, "clip", clip.replace(test_short_side=clip.short_side))

    def data_config(self) -> DataConfig:
        """The data layer's `DataConfig` for this single serving view."""
        return preprocessing.serving_data_config(self.clip)

    def to_dict(self) -> dict:
        """JSON-friendly: ``{"clip_spec": {...}, "top_k": ..., limits...}``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "clip"}
        return {"clip_spec": self.clip.to_dict(), **out}


_SERVING_FIELDS = ("top_k", "max_frame_pixels", "max_request_frames", "max_decoded_bytes")


def _model_frames(model) -> dict:
    inputs = model.input
    if not isinstance(inputs, dict):
        raise ValueError(
            "Expected a model whose inputs are a dict keyed by pathway ('slow'/'fast'). "
            f"Received: model.input={inputs!r}"
        )
    return {k: v.shape[1] for k, v in inputs.items() if k in ("slow", "fast")}


def clip_spec_of_model(model) -> ClipSpec:
    """The model's own clip spec (`model.clip_spec`); for a model saved before clip specs existed,
    PySlowFast's Kinetics defaults with frames, alpha and pathways read from the input shapes."""
    spec = clip_spec_lib.from_model(model)
    if spec is not None:
        return spec
    frames = _model_frames(model)
    pathways = tuple(p for p in ("slow", "fast") if p in frames)
    main = frames["fast" if "fast" in frames else "slow"]
    if main is None:
        raise ValueError(
            "The model carries no clip spec and has no static clip length; pass a ClipSpec. "
            f"Received: input frames={frames}"
        )
    fields = {"pathways": pathways, "num_frames": int(main)}
    if len(pathways) == 2 and frames["slow"]:
        fields["alpha"] = int(main) // int(frames["slow"])
    logging.warning("The model carries no clip spec: serving with %s and defaults.", fields)
    return ClipSpec(**fields)


def serving_config_from_model(model, clip: ClipSpec | None = None, **overrides) -> ServingConfig:
    """The serving config of a model: its clip spec (or `clip`), with `overrides` applied.

    Args:
        model: a Keras model taking `{"slow": [B, T_s, H, W, 3], "fast": [B, T_f, H, W, 3]}` (or a
            single pathway); its `clip_spec` attribute (saved in `.keras`) is used when present.
        clip: optional `ClipSpec` to use instead of the model's.
        **overrides: `ClipSpec` fields (e.g. ``test_crop=224``) and `ServingConfig` fields
            (``top_k``, the ``max_*`` limits); None values are ignored (unset flags).

    Returns:
        A `ServingConfig` whose frames per pathway are the model's (checked).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    clip_names = {f.name for f in dataclasses.fields(ClipSpec)}
    unknown = sorted(set(overrides) - clip_names - set(_SERVING_FIELDS))
    if unknown:
        raise ValueError(
            f"Unknown serving overrides {unknown}; expected ClipSpec fields {sorted(clip_names)} "
            f"or {list(_SERVING_FIELDS)}. Received: {overrides}"
        )
    spec = (clip or clip_spec_of_model(model)).clip_spec
    spec = spec.override(**{k: v for k, v in overrides.items() if k in clip_names})
    frames = _model_frames(model)
    expected = spec.frames_per_pathway()
    if any(frames.get(p) not in (None, t) for p, t in expected.items()) or set(frames) != set(expected):
        raise ValueError(
            "The clip spec does not give the model's frames per pathway. "
            f"Received: clip spec frames={expected}, model input frames={frames}"
        )
    return ServingConfig(clip=spec, **{k: v for k, v in overrides.items() if k in _SERVING_FIELDS})


def _check(condition, template: str, values) -> tf.Operation:
    """An assertion whose message is `template` formatted with `values` (as the caller sees it)."""
    message = tf.strings.format(template, values, summarize=-1)
    return tf.debugging.Assert(condition, [message])


def check_frames_request(frames: tf.Tensor, config: ServingConfig) -> tf.Tensor:
    """`frames` (uint8 `[B, T, H, W, 3]`) once its size is within the export's limits.

    Only the shape is read. Everything downstream depends on the returned tensor, so nothing is
    resampled or resized (float32, 4x the bytes) before the checks pass.
    """
    shape = tf.shape(frames, out_type=tf.int64)
    b, t, h, w = shape[0], shape[1], shape[2], shape[3]
    checks = [
        _check(b > 0, "`frames`: the batch is empty (batch size 0); send at least one clip.", []),
        _check(
            tf.reduce_all(shape[1:4] > 0),
            "`frames` must be uint8 [batch, T, H, W, 3] with T, H, W >= 1. Received: shape {}",
            [shape],
        ),
        _check(
            h * w <= config.max_frame_pixels,
            f"`frames`: a frame of {{}} x {{}} pixels exceeds max_frame_pixels="
            f"{config.max_frame_pixels} (export.py --max_frame_pixels).",
            [h, w],
        ),
        _check(
            b * t <= config.max_request_frames,
            f"`frames`: {{}} frames (batch {{}} x T {{}}) exceed max_request_frames="
            f"{config.max_request_frames} (export.py --max_request_frames).",
            [b * t, b, t],
        ),
        _check(
            b * t * h * w * 3 <= config.max_decoded_bytes,
            f"`frames`: {{}} bytes exceed max_decoded_bytes={config.max_decoded_bytes} "
            "(export.py --max_decoded_bytes).",
            [b * t * h * w * 3],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(frames)


def check_examples_request(examples: tf.Tensor, config: ServingConfig) -> tf.Tensor:
    """`examples` (string `[B]`) once the frames they hold are within the export's limits.

    Frame sizes come from the JPEG headers only (`tf.image.extract_jpeg_shape`, no pixel is
    decoded), and the header pass itself runs only after the frame count passed. The per-record
    decode estimate is an upper bound of what `preprocess_test_view` decodes: at most
    `min(N, num_frames)` distinct frames of the record, each at most its largest frame.
    """
    batch = tf.size(examples, out_type=tf.int64)
    _, sequence, _ = tf.io.parse_sequence_example(
        examples, sequence_features={records.IMAGE_KEY: tf.io.RaggedFeature(tf.string)}
    )
    jpegs = sequence[records.IMAGE_KEY]  # ragged [B, (N)]
    counts = tf.cast(jpegs.row_lengths(), tf.int64)
    total = tf.reduce_sum(counts)
    count_checks = [
        _check(batch > 0, "`examples`: the batch is empty (batch size 0); send at least one.", []),
        _check(
            total <= config.max_request_frames,
            f"`examples`: {{}} frames in the request exceed max_request_frames="
            f"{config.max_request_frames} (export.py --max_request_frames; the client sends "
            "fewer with --max_frames).",
            [total],
        ),
    ]
    with tf.control_dependencies(count_checks):
        flat = tf.identity(jpegs.flat_values)
    not_jpeg = tf.where(tf.strings.substr(flat, 0, 2) != b"\xff\xd8")[:, 0]  # no SOI marker
    count_checks.append(_check(
        tf.size(not_jpeg) == 0,
        "`examples`: {} frames of the request are not JPEGs (first: frame {} over the batch); "
        "`image/encoded` must hold one JPEG per frame.",
        [tf.size(not_jpeg), tf.concat([not_jpeg, [-1]], 0)[0]],
    ))
    with tf.control_dependencies(count_checks):
        flat = tf.identity(flat)
    sizes = tf.map_fn(
        lambda jpeg: tf.image.extract_jpeg_shape(jpeg, output_type=tf.int64)[:2],
        flat,
        fn_output_signature=tf.TensorSpec([2], tf.int64),
    )
    pixels = tf.reduce_prod(sizes, axis=1)
    largest = tf.argmax(tf.concat([pixels, [0]], 0))
    biggest = tf.concat([sizes, [[0, 0]]], 0)[largest]
    per_record = tf.maximum(
        tf.reduce_max(tf.RaggedTensor.from_row_lengths(pixels, counts), axis=1), 0
    )
    decoded = tf.reduce_sum(tf.minimum(counts, config.clip.num_frames) * per_record * 3)
    checks = [
        _check(
            biggest[0] * biggest[1] <= config.max_frame_pixels,
            f"`examples`: a JPEG header declares {{}} x {{}} pixels, over max_frame_pixels="
            f"{config.max_frame_pixels} (export.py --max_frame_pixels).",
            [biggest[0], biggest[1]],
        ),
        _check(
            decoded <= config.max_decoded_bytes,
            f"`examples`: decoding the clips would take {{}} bytes, over max_decoded_bytes="
            f"{config.max_decoded_bytes} (export.py --max_decoded_bytes).",
            [decoded],
        ),
    ]
    with tf.control_dependencies(count_checks + checks):
        return tf.identity(examples)


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


def build_serving_module(
    model,
    config: ServingConfig,
    labels: list[str],
    labels_path: str | None = None,
    clip_spec_path: str | None = None,
) -> tuple[tf.Module, dict]:
    """Traces the serving signatures and wraps their variables in a `tf.Module`.

    The Keras model is captured by closure only (never tracked), and the module tracks exactly the
    `tf.Variable`s the traced functions capture, so each weight is saved once. The model and head
    are traced once (`predict`) and called from both signatures.

    Args:
        model: a Keras classifier (`build_eval_model()` is used when present).
        config: a `ServingConfig`.
        labels: list of `num_classes` label strings, baked into the graph as a constant.
        labels_path: optional existing text file with the labels, tracked as an asset
            (`assets/labels.txt` in the SavedModel).
        clip_spec_path: optional existing `clip_spec.json`, tracked as an asset
            (`assets/clip_spec.json`).

    Returns:
        `(module, signatures)`: the module holds `model_variables` (and the assets);
        `signatures` maps `serving_default` / `serve_examples` / `metadata` to concrete
        functions.
    """
    probabilities_fn = _probabilities_fn(model)
    k = min(config.top_k, len(labels))
    data_config = config.data_config()
    crop = config.clip.test_crop
    specs = {
        p: tf.TensorSpec([t, crop, crop, 3], tf.float32)
        for p, t in config.clip.frames_per_pathway().items()
    }
    batched = {p: tf.TensorSpec([None, *s.shape], s.dtype) for p, s in specs.items()}

    # autograph=False throughout: the code has no tensor-dependent Python control flow, and
    # autograph's source conversion was most of the (2-core) tracing time.
    @tf.function(input_signature=[batched], autograph=False)
    def predict(inputs):
        probs = probabilities_fn(inputs)
        if probs.shape[-1] != len(labels):
            raise ValueError(
                f"The model has {probs.shape[-1]} classes but {len(labels)} labels were given."
            )
        ids = tf.cast(tf.math.top_k(probs, k=k).indices, tf.int32)
        return {
            "probabilities": probs,
            "top_k_ids": ids,
            "top_k_labels": tf.gather(tf.constant(labels, dtype=tf.string), ids),
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=FRAMES_KEY)],
        autograph=False,
    )
    def serve_frames(frames):
        # TF Serving does not check request shapes against the SignatureDef (it feeds the tensor
        # as is), so the graph checks them at run time with messages that name the contract.
        # EnsureShape is a real op (not folded away by the static [?, ?, ?, ?, 3] signature).
        frames = tf.ensure_shape(frames, [None, None, None, None, 3], name="check_frames_shape")
        frames = check_frames_request(frames, config)
        inputs = tf.map_fn(
            lambda clip: preprocessing.preprocess_frames(clip, config.clip),
            frames,
            fn_output_signature=specs,
        )
        return predict(inputs)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_KEY)], autograph=False
    )
    def serve_examples(examples):
        examples = check_examples_request(examples, config)
        inputs = tf.map_fn(
            lambda serialized: preprocessing.preprocess_example(serialized, data_config),
            examples,
            fn_output_signature=specs,
        )
        return predict(inputs)

    signatures = {
        DEFAULT_SIGNATURE: serve_frames.get_concrete_function(),
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        METADATA_SIGNATURE: metadata_signature(config.clip),
    }
    module = tf.Module(name="slowfast_serving")
    # Only the raw tf.Variables the graphs read -- not the Keras wrappers (see module docstring).
    module.model_variables = list({id(v): v for v in predict.get_concrete_function().variables}.values())
    if labels_path:
        module.labels_asset = tf.saved_model.Asset(labels_path)
    if clip_spec_path:
        module.clip_spec_asset = tf.saved_model.Asset(clip_spec_path)
    return module, signatures


def metadata_signature(clip: ClipSpec):
    """The `metadata` signature's concrete function: `dummy` int32 `[B]` in, the clip spec's JSON
    (`CLIP_SPEC_KEY`, one copy per row) out, so a client learns the model's clip settings."""
    clip_json = clip.to_json()

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int32, name=METADATA_INPUT_KEY)],
        autograph=False,
    )
    def metadata(dummy):
        # One copy per row: TF Serving's server-side batching needs a batched input and output.
        return {CLIP_SPEC_KEY: tf.fill(tf.shape(dummy), tf.constant(clip_json))}

    return metadata.get_concrete_function()


def clip_spec_from_metadata(outputs: dict) -> ClipSpec:
    """The `ClipSpec` in a `metadata` signature reply (``{"clip_spec": [json, ...]}``)."""
    value = outputs[CLIP_SPEC_KEY]
    value = value.reshape(-1)[0] if hasattr(value, "reshape") else value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return ClipSpec.from_json(value)


def save_serving_model(model, export_dir: str, config: ServingConfig, labels: list[str]) -> str:
    """Builds the serving module and writes a SavedModel to `export_dir` (must not exist).

    Returns:
        `export_dir`.
    """
    if tf.io.gfile.exists(export_dir):
        raise ValueError(f"`export_dir` already exists. Received: export_dir={export_dir!r}")
    with tempfile.TemporaryDirectory(prefix="slowfast_labels_") as tmp:
        labels_path = os.path.join(tmp, "labels.txt")
        with open(labels_path, "w") as f:
            f.write("\n".join(labels) + "\n")
        clip_spec_path = config.clip.save(os.path.join(tmp, clip_spec_lib.ASSET_NAME))
        module, signatures = build_serving_module(
            model, config, labels, labels_path, clip_spec_path
        )
        # The saver logs every captured variable of each signature at INFO ("input name(s) 6536,
        # ... renamed to unknown"): those are internal capture placeholders, not the named
        # SignatureDef inputs, and the line runs to tens of kB for R50. Keep warnings only.
        # (TF's saver logs through absl.)
        loggers = [logging.getLogger("absl"), tf.get_logger()]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            tf.saved_model.save(module, export_dir, signatures=signatures)
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
    return export_dir
