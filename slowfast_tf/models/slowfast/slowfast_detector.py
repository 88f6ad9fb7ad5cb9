"""AVA action detector = SlowFast backbone + PySlowFast ``ResNetRoIHead`` (paper section 5).

Boxes enter as a padded tensor so every shape is static (tf.function, TPU, TF Serving): the
model takes ``{pathway clips..., "boxes": [B, M, 4], "box_mask": [B, M]}`` and returns
per-box logits ``[B, M, num_classes]``. Padding rows (``box_mask == 0``) are replaced by an
empty box before RoIAlign (so NaN / garbage padding cannot leak) and their outputs are 0; every
box is processed independently, so valid outputs do not depend on the padding.
"""

import keras
from keras import ops

from slowfast_tf.models.common.presets import check_clip_spec
from slowfast_tf.models.common.roi_align import roi_align
from slowfast_tf.models.slowfast.slowfast_backbone import validate_pathway_inputs

BOX_KEYS = ("boxes", "box_mask")
HEAD_ACTIVATIONS = ("sigmoid", "softmax")


@keras.saving.register_keras_serializable(package="slowfast_tf")
class RoIHeadFeatures(keras.layers.Layer):
    """The parameter-free part of PySlowFast's ``ResNetRoIHead``: per box, one feature vector.

    Inputs ``[res5_0, ..., res5_{P-1}, boxes, box_mask, clip]``:

    - ``res5_p`` ``[B, T_p, h, w, C_p]`` per pathway: averaged over time (PySlowFast's
      ``AvgPool3d([T_p, 1, 1])`` over the whole res5 clip) and concatenated over channels.
      RoIAlign and the max-pool act per channel, so concatenating first (as PyTorchVideo does)
      equals PySlowFast's per-pathway RoIAlign + max-pool + concat.
    - ``boxes`` ``[B, M, 4]``: ``(x1, y1, x2, y2)`` **normalised to [0, 1]** by the width and
      height of ``clip`` (any pathway's input); they are scaled to input pixels, the
      coordinates PySlowFast's RoIAlign gets, and then by ``spatial_scale`` to feature pixels.
    - ``box_mask`` ``[B, M]``: > 0 for real boxes, 0 for padding.

    Then ``RoIAlign(output_size, spatial_scale, sampling_ratio, aligned)`` and a max over the
    ``output_size`` grid (``MaxPool2d(7, stride 1)`` on a 7x7 map). Output ``[B, M, sum C_p]``,
    zero rows for padding.

    Args:
        output_size: int, RoIAlign resolution (``ROI_XFORM_RESOLUTION``, 7).
        spatial_scale: float, input pixel -> feature pixel (1/16 for res5 stride 16).
        sampling_ratio: int, 0 = adaptive (PySlowFast, PyTorchVideo).
        aligned: bool, detectron2 ``aligned`` (True in the ``*_SHORT`` configs, False in the
            released ``c2`` models and PyTorchVideo).
    """

    def __init__(self, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=True, **kwargs):
        # No autocast: under mixed precision the boxes must stay float32 (float16 would move a
        # normalised coordinate by up to ~0.1 px at 224); the features keep their own dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = int(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def call(self, inputs):
        *features, boxes, box_mask, clip = inputs
        pooled = [ops.mean(x, axis=1) for x in features]
        x = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        valid = ops.cast(box_mask, "float32") > 0
        boxes = ops.where(valid[..., None], ops.cast(boxes, "float32"), 0.0)
        shape = ops.shape(clip)
        height = ops.cast(shape[2], "float32")
        width = ops.cast(shape[3], "float32")
        boxes = boxes * ops.stack([width, height, width, height])
        x = roi_align(
            x, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )
        x = ops.max(x, axis=(2, 3))
        return ops.where(valid[..., None], x, ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        *features, boxes, _, _ = input_shape
        channels = sum(int(f[-1]) for f in features)
        return (boxes[0], boxes[1], channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_size": self.output_size,
                "spatial_scale": self.spatial_scale,
                "sampling_ratio": self.sampling_ratio,
                "aligned": self.aligned,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="slowfast_tf")
class BoxMask(keras.layers.Layer):
    """``where(box_mask > 0, values, 0)`` for ``[B, M, ...]`` values and a ``[B, M]`` mask."""

    def call(self, inputs):
        values, box_mask = inputs
        valid = ops.cast(box_mask, "float32") > 0
        for _ in range(len(values.shape) - 2):
            valid = ops.expand_dims(valid, -1)
        return ops.where(valid, values, ops.zeros_like(values))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


def _make_inputs(backbone, pathways, max_boxes):
    inputs = {key: keras.Input(shape=backbone.input[key].shape[1:], name=key) for key in pathways}
    inputs["boxes"] = keras.Input(shape=(max_boxes, 4), name="boxes")
    inputs["box_mask"] = keras.Input(shape=(max_boxes,), name="box_mask")
    return inputs


def _roi_features(backbone, pathways, roi_features, inputs):
    endpoints = backbone({key: inputs[key] for key in pathways})
    res5 = [endpoints[f"{key}_res5"] for key in pathways]
    return roi_features(res5 + [inputs["boxes"], inputs["box_mask"], inputs[pathways[0]]])


@keras.saving.register_keras_serializable(package="slowfast_tf")
class SlowFastDetector(keras.Model):
    """PySlowFast's AVA detector: ``SlowFastBackbone`` (res5 stride 1, dilation 2 -> feature
    stride 16) + ``ResNetRoIHead``.

    ```
    clips -> backbone -> {p}_res5 -> mean over T (per pathway) -> concat ---+
    boxes [B, M, 4] (normalised x1 y1 x2 y2) * (W, H) -> input pixels ----> RoIAlign 7x7
        -> max over 7x7 -> dropout -> Dense(num_classes) -> logits [B, M, num_classes]
    ```
    Inputs: ``{pathway: [B, T_p, H, W, 3]}`` as the backbone, plus ``"boxes"`` ``[B, M, 4]``
    float32 ``(x1, y1, x2, y2)`` normalised to ``[0, 1]`` by the clip's width/height, and
    ``"box_mask"`` ``[B, M]`` float32 (1 = real box, 0 = padding). ``M`` is ``max_boxes``
    (None = any, fixed per batch).

    The output is the **logits** ``[B, M, num_classes]`` (0 at padding rows). PySlowFast applies
    a sigmoid and trains with ``BCELoss`` on the probabilities, which equals a sigmoid
    cross-entropy on these logits; ``build_eval_model()`` adds the probabilities.

    Args:
        backbone: ``SlowFastBackbone`` (any arch; AVA presets use res5 spatial stride 1 and
            dilation 2).
        num_classes: int, 80 for AVA.
        dropout: float, before the projection (0.5 in PySlowFast).
        roi_output_size: int, RoIAlign resolution (7).
        spatial_scale: None or float; None = ``1 / backbone.output_stride`` (1/16 for AVA).
        sampling_ratio: int, RoIAlign samples per bin and axis, 0 = adaptive.
        aligned: bool, RoIAlign ``aligned`` flag (see ``RoIHeadFeatures``).
        activation: str, ``"sigmoid"`` (AVA, multi-label) or ``"softmax"``; used by
            ``build_eval_model()``.
        max_boxes: None or int, the padded box count ``M`` (static for TPU / serving).
        clip_spec: None or dict (``ClipSpec.to_dict()``), saved in ``get_config`` as for
            ``SlowFastVideoClassifier``.
    """

    def __init__(
        self,
        backbone,
        num_classes=80,
        dropout=0.5,
        roi_output_size=7,
        spatial_scale=None,
        sampling_ratio=0,
        aligned=True,
        activation="sigmoid",
        max_boxes=None,
        clip_spec=None,
        **kwargs,
    ):
        # === Validation ===
        clip_spec = check_clip_spec(clip_spec, backbone)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        if int(roi_output_size) != roi_output_size or roi_output_size < 1:
            raise ValueError(
                f"`roi_output_size` must be a positive int. Received: roi_output_size={roi_output_size!r}"
            )
        if int(sampling_ratio) != sampling_ratio or sampling_ratio < 0:
            raise ValueError(
                f"`sampling_ratio` must be an int >= 0. Received: sampling_ratio={sampling_ratio!r}"
            )
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {HEAD_ACTIVATIONS}. Received: activation={activation!r}"
            )
        if max_boxes is not None and (int(max_boxes) != max_boxes or max_boxes < 1):
            raise ValueError(f"`max_boxes` must be None or a positive int. Received: max_boxes={max_boxes!r}")
        if spatial_scale is None:
            spatial_scale = 1.0 / backbone.output_stride
        if not spatial_scale > 0:
            raise ValueError(f"`spatial_scale` must be > 0. Received: spatial_scale={spatial_scale!r}")
        pathways = tuple(backbone.pathways)

        # === Layers ===
        # Sublayers stay local until `super().__init__`: on the torch backend a Keras layer is a
        # `torch.nn.Module` and cannot be assigned to a Module that is not initialised yet.
        roi_features = RoIHeadFeatures(
            roi_output_size, spatial_scale, sampling_ratio, aligned, name="head_roi"
        )
        head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        head_projection = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            name="head_projection",
        )
        # float32 so that mixed precision still returns float32 logits.
        logits_mask = BoxMask(dtype="float32", name="logits")

        # === Functional Model ===
        inputs = _make_inputs(backbone, pathways, max_boxes)
        features = _roi_features(backbone, pathways, roi_features, inputs)
        logits = head_projection(head_dropout(features))
        logits = logits_mask([logits, inputs["box_mask"]])
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Layers as attributes (tracked in the order the graph already uses) ===
        self.backbone = backbone
        self.pathways = pathways
        self.roi_features = roi_features
        self.head_dropout = head_dropout
        self.head_projection = head_projection
        self.logits_mask = logits_mask

        # === Config ===
        self.num_classes = int(num_classes)
        self.dropout = dropout
        self.roi_output_size = int(roi_output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.activation = activation
        self.clip_spec = clip_spec
        self.max_boxes = None if max_boxes is None else int(max_boxes)

    def _make_inputs(self, max_boxes):
        return _make_inputs(self.backbone, self.pathways, max_boxes)

    def _roi_features(self, inputs):
        return _roi_features(self.backbone, self.pathways, self.roi_features, inputs)

    def build_eval_model(self):
        """Returns a ``keras.Model`` sharing this detector's weights with dict outputs
        ``{"logits", "probabilities", "features"}`` (each ``[B, M, ...]``, 0 at padding rows):
        ``probabilities`` = sigmoid (or softmax) of the logits, PySlowFast's test output;
        ``features`` = the pooled pre-projection vector per box (2304-d for SlowFast R50)."""
        inputs = self._make_inputs(self.max_boxes)
        features = self._roi_features(inputs)
        logits = self.logits_mask([self.head_projection(features), inputs["box_mask"]])
        activation = keras.layers.Activation(self.activation, dtype="float32", name="head_act")
        probabilities = BoxMask(dtype="float32", name="probabilities")(
            [activation(logits), inputs["box_mask"]]
        )
        outputs = {"logits": logits, "probabilities": probabilities, "features": features}
        return keras.Model(inputs, outputs, name=f"{self.name}_eval")

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, dict) or not set(BOX_KEYS) <= set(inputs):
            keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"Detector inputs must be a dict with the pathway clips {list(self.pathways)} "
                f"plus {list(BOX_KEYS)}. Received: {keys}"
            )
        validate_pathway_inputs(
            {k: v for k, v in inputs.items() if k not in BOX_KEYS},
            self.pathways,
            self.backbone.input_frames,
        )
        boxes, mask = inputs["boxes"], inputs["box_mask"]
        if len(boxes.shape) != 3 or boxes.shape[-1] != 4 or len(mask.shape) != 2:
            raise ValueError(
                "`boxes` must be [batch, max_boxes, 4] and `box_mask` [batch, max_boxes]. "
                f"Received: boxes.shape={tuple(boxes.shape)}, box_mask.shape={tuple(mask.shape)}"
            )
        if None not in (boxes.shape[1], mask.shape[1]) and boxes.shape[1] != mask.shape[1]:
            raise ValueError(
                "`boxes` and `box_mask` must have the same max_boxes. "
                f"Received: boxes.shape={tuple(boxes.shape)}, box_mask.shape={tuple(mask.shape)}"
            )
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "roi_output_size": self.roi_output_size,
            "spatial_scale": self.spatial_scale,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "activation": self.activation,
            "max_boxes": self.max_boxes,
            "clip_spec": check_clip_spec(self.clip_spec, self.backbone),  # a plain dict
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
