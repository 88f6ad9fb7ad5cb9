"""Video classifier = SlowFast backbone + PySlowFast ``ResNetBasicHead`` (fully convolutional)."""

import keras

from slowfast_tf.models.common.presets import check_clip_spec
from slowfast_tf.models.slowfast.slowfast_backbone import validate_pathway_inputs

HEAD_ACTIVATIONS = ("softmax", "sigmoid")
# PySlowFast trains every Kinetics model at a 224 crop; the head pool kernel is fixed from it.
DEFAULT_TRAIN_CROP_SIZE = 224


def _grid_size(side, output_stride):
    # Every stride-2 op (7x7/p3 conv, 3x3/p1 pool and convs) maps n -> ceil(n / 2).
    while output_stride > 1:
        side = (side + 1) // 2
        output_stride //= 2
    return side


def _head_kernel(backbone, key, train_crop_size):
    side = max(1, train_crop_size // backbone.output_stride)
    if key == "fast" and getattr(backbone, "fast_resolution", "full") == "half":
        side = _grid_size(train_crop_size // 2, backbone.output_stride)  # whole half-size grid
    return (backbone.output_frames[key], side, side)


def _pooled_features(backbone, head_pools, head_concat, inputs):
    endpoints = backbone(inputs)
    pooled = [head_pools[key](endpoints[f"{key}_res5"]) for key in backbone.pathways]
    return head_concat(pooled) if head_concat is not None else pooled[0]


@keras.saving.register_keras_serializable(package="slowfast_tf")
class SlowFastVideoClassifier(keras.Model):
    """PySlowFast ``ResNetBasicHead`` on top of a ``SlowFastBackbone`` (or any backbone exposing
    ``pathways``, ``output_frames``, ``output_stride`` and ``{pathway}_res5`` endpoints).

    Per pathway: ``AvgPool3D(head_pool_size[p], strides=1, "valid")`` on ``{p}_res5``; concat
    ``[slow, fast]`` (2048 + 256 = 2304 channels for R50); dropout; a Dense projection applied at
    every remaining position. The kernel is fixed from the *train* crop (``T_p x 7 x 7`` at 224),
    so a larger test crop leaves a grid of positions (2 x 2 at 256) -- the fully convolutional
    testing of the paper.

    The model output is the **logits** ``[B, num_classes]`` = mean over positions of the
    per-position logits (PySlowFast's training output at the train crop). ``build_eval_model()``
    adds probabilities as PySlowFast evaluates them: mean over positions of softmax (or sigmoid).

    Args:
        backbone: ``SlowFastBackbone``.
        num_classes: int, number of classes.
        dropout: float, dropout rate before the projection (0.5 in every PySlowFast config).
        head_pool_size: None or dict ``{pathway: (t, h, w)}``. None uses ``(T_p, s, s)`` with
            ``s = train_crop_size // backbone.output_stride``.
        train_crop_size: int, crop used to derive the default ``head_pool_size``; defaults to
            ``backbone.image_size`` when set, else 224.
        activation: str, ``"softmax"`` (single label) or ``"sigmoid"`` (multi-label, Charades),
            used only by ``build_eval_model()``; training uses logits.
        clip_spec: None or dict (``slowfast_tf.clip_spec.ClipSpec.to_dict()``), how the model
            wants its clips (frames, sampling rate, crops, short side, mean/std). Saved in
            ``get_config``, so a ``.keras`` file carries it; its frames per pathway must be the
            backbone's. ``build_model`` sets the preset's.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        dropout=0.5,
        head_pool_size=None,
        train_crop_size=None,
        activation="softmax",
        clip_spec=None,
        **kwargs,
    ):
        # === Validation ===
        clip_spec = check_clip_spec(clip_spec, backbone)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {HEAD_ACTIVATIONS}. Received: activation={activation!r}"
            )
        if train_crop_size is None:
            train_crop_size = backbone.image_size or DEFAULT_TRAIN_CROP_SIZE
        pathways = tuple(backbone.pathways)
        if head_pool_size is None:
            head_pool_size = {k: _head_kernel(backbone, k, train_crop_size) for k in pathways}
        if not isinstance(head_pool_size, dict) or set(head_pool_size) != set(pathways):
            raise ValueError(
                f"`head_pool_size` must be None or a dict with keys {sorted(pathways)} of "
                f"(t, h, w) kernels. Received: head_pool_size={head_pool_size!r}"
            )
        head_pool_size = {k: tuple(int(v) for v in head_pool_size[k]) for k in pathways}
        for key, kernel in head_pool_size.items():
            if len(kernel) != 3 or kernel[0] > backbone.output_frames[key] or min(kernel) < 1:
                raise ValueError(
                    f"`head_pool_size[{key!r}]` must be 3 positive ints with t <= "
                    f"{backbone.output_frames[key]} frames. Received: head_pool_size={head_pool_size}"
                )

        # === Layers ===
        # Sublayers stay local until `super().__init__`: on the torch backend a Keras layer is a
        # `torch.nn.Module` and cannot be assigned to a Module that is not initialised yet.
        head_pools = {
            key: keras.layers.AveragePooling3D(
                head_pool_size[key], strides=1, padding="valid", name=f"head_pathway{p}_avgpool"
            )
            for p, key in enumerate(pathways)
        }
        # Single-pathway models have nothing to concatenate (an unused layer would stay unbuilt).
        head_concat = (
            keras.layers.Concatenate(axis=-1, name="head_concat") if len(pathways) > 1 else None
        )
        head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        head_projection = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            name="head_projection",
        )
        # Averages over positions run in float32 so mixed precision returns float32 logits.
        logits_mean = keras.layers.GlobalAveragePooling3D(dtype="float32", name="logits")

        # === Functional Model ===
        inputs = {
            key: keras.Input(shape=backbone.input[key].shape[1:], name=key) for key in pathways
        }
        features_map = _pooled_features(backbone, head_pools, head_concat, inputs)
        per_position = head_projection(head_dropout(features_map))
        logits = logits_mean(per_position)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Layers as attributes (tracked in the order the graph already uses) ===
        self.backbone = backbone
        self.pathways = pathways
        self.head_pools = head_pools
        self.head_concat = head_concat
        self.head_dropout = head_dropout
        self.head_projection = head_projection
        self.logits_mean = logits_mean

        # === Config ===
        self.num_classes = int(num_classes)
        self.dropout = dropout
        self.head_pool_size = head_pool_size
        self.train_crop_size = int(train_crop_size)
        self.activation = activation
        self.clip_spec = clip_spec

    def _pooled_features(self, inputs):
        return _pooled_features(self.backbone, self.head_pools, self.head_concat, inputs)

    def build_eval_model(self):
        """Returns a ``keras.Model`` sharing this classifier's weights with dict outputs
        ``{"logits", "probabilities", "features"}``, each averaged over head positions:
        ``probabilities`` = mean of per-position softmax/sigmoid (PySlowFast's test output; mean of
        4 softmaxes at a 256 crop), ``features`` = the pooled pre-projection vector (2304-d for
        SlowFast R50), ``logits`` = mean of per-position logits."""
        inputs = {
            key: keras.Input(shape=self.backbone.input[key].shape[1:], name=key)
            for key in self.pathways
        }
        features_map = self._pooled_features(inputs)
        per_position = self.head_projection(features_map)
        activation = keras.layers.Activation(self.activation, dtype="float32", name="head_act")
        probabilities = keras.layers.GlobalAveragePooling3D(dtype="float32", name="probabilities")(
            activation(per_position)
        )
        features = keras.layers.GlobalAveragePooling3D(dtype="float32", name="features")(
            features_map
        )
        outputs = {
            "logits": self.logits_mean(per_position),
            "probabilities": probabilities,
            "features": features,
        }
        return keras.Model(inputs, outputs, name=f"{self.name}_eval")

    def __call__(self, inputs, *args, **kwargs):
        validate_pathway_inputs(inputs, self.pathways, self.backbone.input_frames)
        for key in self.pathways:
            height, width = inputs[key].shape[2:4]
            side = min(s for s in (height, width) if s is not None) if (height or width) else None
            grid = _grid_size(side, self.backbone.output_stride) if side else None
            if grid is not None and grid < max(self.head_pool_size[key][1:]):
                raise ValueError(
                    f"Input {key!r} is too small for the head: a {side}px side gives a {grid}x{grid} "
                    f"res5 grid but the head pools {self.head_pool_size[key][1:]} (fixed from "
                    f"train_crop_size={self.train_crop_size}). Use crops >= train_crop_size. "
                    f"Received: shape={tuple(inputs[key].shape)}"
                )
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "head_pool_size": {k: list(v) for k, v in self.head_pool_size.items()},
            "train_crop_size": self.train_crop_size,
            "activation": self.activation,
            "clip_spec": check_clip_spec(self.clip_spec, self.backbone),  # a plain dict
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
