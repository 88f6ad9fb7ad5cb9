"""Port ``torchvision.models.video`` weights (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) to Keras.

torchvision's ``VideoResNet`` is the same network as ``R2Plus1DBackbone`` for R3D, MC3 and
(with ``mid_channels="torchvision"``) R(2+1)D: 3x7x7 or factorised (1x7x7 -> 45 -> 3x1x1) stem
without max-pool, basic blocks, 1x1x1 projection shortcuts with the block's stride, global average
pool and one linear layer. The map below is purely by name, so it also covers the other variants
if someone builds them with torchvision's ``VideoResNet`` class.

Name map (torch -> Keras layer):

```
stem.0 / stem.1                      s1_pathway0_stem_conv / s1_pathway0_stem_bn
stem.0, .1, .3, .4 (R(2+1)D)         ..._stem_conv_spatial, _spatial_bn, _temporal, ..._stem_bn
layer{k}.{j}.conv1.0 / conv1.1       s{k+1}_pathway0_res{j}_branch2_a / _a_bn
layer{k}.{j}.conv2.0 / conv2.1       s{k+1}_pathway0_res{j}_branch2_b / _b_bn
layer{k}.{j}.convN.0.0 / .0.1 / .0.3 (2+1)D  ..._{a,b}_spatial / _spatial_bn / _temporal
layer{k}.{j}.downsample.0 / .1       s{k+1}_pathway0_res{j}_branch1 / _branch1_bn
fc                                   head_projection (classifier only)
```

Conv kernels are transposed from torch ``[out, in, t, h, w]`` to Keras ``[t, h, w, in, out]``,
the linear weight from ``[out, in]`` to ``[in, out]``. torchvision's weights expect clips
normalised with mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145, 0.216989), resized
to 128x171 and center-cropped to 112 -- not the project's default (x/255 - 0.45) / 0.225.

No torch import here: ``state_dict`` values may be torch tensors or numpy arrays.
"""

import re

import numpy as np

from slowfast_tf.clip_spec import CLIP_SPECS

# torchvision's normalisation for its Kinetics-400 video weights (RGB, values in [0, 1]); owned by
# the clip spec "r2plus1d_torchvision_16x1".
TORCHVISION_MEAN = CLIP_SPECS["r2plus1d_torchvision_16x1"].mean
TORCHVISION_STD = CLIP_SPECS["r2plus1d_torchvision_16x1"].std

_STEM = {
    "s1_pathway0_stem_conv": "stem.0",
    "s1_pathway0_stem_conv_spatial": "stem.0",
    "s1_pathway0_stem_conv_spatial_bn": "stem.1",
    "s1_pathway0_stem_conv_temporal": "stem.3",
}
_BLOCK = re.compile(r"^s([2-5])_pathway0_res(\d+)_(branch1|branch2_a|branch2_b)(.*)$")
_SLOT = {"branch2_a": "conv1", "branch2_b": "conv2"}
_SUFFIX = {"": ".0", "_bn": ".1", "_spatial": ".0.0", "_spatial_bn": ".0.1", "_temporal": ".0.3"}


def torchvision_layer_map(backbone):
    """Torch module prefix of every weighted layer of an ``R2Plus1DBackbone``.

    Args:
        backbone: ``R2Plus1DBackbone``.

    Returns:
        dict ``{keras_layer_name: torch_prefix}``, e.g.
        ``{"s3_pathway0_res0_branch2_a_spatial": "layer2.0.conv1.0.0", ...}``.
    """
    mapping = {}
    factorised_stem = backbone.conv_types[0] == "2plus1d"
    for layer in backbone.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name == "s1_pathway0_stem_bn":
            mapping[name] = "stem.4" if factorised_stem else "stem.1"
        elif name in _STEM:
            mapping[name] = _STEM[name]
        else:
            match = _BLOCK.match(name)
            if match is None or match.group(4) not in _SUFFIX:
                raise ValueError(f"No torchvision name for layer. Received: layer={name!r}")
            stage, block, branch, suffix = match.groups()
            prefix = f"layer{int(stage) - 1}.{block}."
            if branch == "branch1":
                mapping[name] = prefix + ("downsample.1" if suffix == "_bn" else "downsample.0")
            else:
                mapping[name] = prefix + _SLOT[branch] + _SUFFIX[suffix]
    return mapping


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype="float32")


def load_torchvision_weights(model, state_dict):
    """Copies a torchvision ``VideoResNet`` state dict into a backbone or classifier, in place.

    Args:
        model: ``R2Plus1DBackbone``, or a classifier with a ``backbone`` attribute and a
            ``head_projection`` Dense layer (``build_model(...)``).
        state_dict: mapping ``{torch_name: tensor or np.ndarray}`` (``module.state_dict()``).

    Returns:
        list of str, the torch keys that were not used (``num_batches_tracked`` excluded); empty
        when the architectures match.

    Raises:
        ValueError: a Keras layer has no counterpart in ``state_dict`` or a shape differs.
    """
    backbone = getattr(model, "backbone", model)
    used = set()

    def take(key, shape, transpose=None):
        if key not in state_dict:
            raise ValueError(f"Missing torchvision weight. Received keys without: {key!r}")
        value = _to_numpy(state_dict[key])
        if transpose is not None:
            value = np.transpose(value, transpose)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"Shape mismatch for {key!r}: torch {tuple(value.shape)} vs Keras {tuple(shape)}. "
                "Check the variant, depth and mid_channels of the Keras model."
            )
        used.add(key)
        return value

    for name, prefix in torchvision_layer_map(backbone).items():
        layer = backbone.get_layer(name)
        if hasattr(layer, "moving_mean"):  # BatchNormalization
            layer.gamma.assign(take(f"{prefix}.weight", layer.gamma.shape))
            layer.beta.assign(take(f"{prefix}.bias", layer.beta.shape))
            layer.moving_mean.assign(take(f"{prefix}.running_mean", layer.moving_mean.shape))
            layer.moving_variance.assign(
                take(f"{prefix}.running_var", layer.moving_variance.shape)
            )
        else:
            layer.kernel.assign(take(f"{prefix}.weight", layer.kernel.shape, (2, 3, 4, 1, 0)))
    if model is not backbone:
        head = model.head_projection
        head.kernel.assign(take("fc.weight", head.kernel.shape, (1, 0)))
        head.bias.assign(take("fc.bias", head.bias.shape))
    return sorted(k for k in state_dict if k not in used and not k.endswith("num_batches_tracked"))
