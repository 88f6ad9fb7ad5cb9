"""Folds inference-mode BatchNorm into the preceding convolutions (for serving / export).

In inference a BatchNorm after a conv is the affine map ``y = s * (x - mean) + beta`` with
``s = gamma / sqrt(var + eps)`` per output channel, so ``conv(x, K) -> BN`` equals
``conv(x, K * s) + (b - mean) * s + beta`` (``b`` the conv bias, 0 when it has none). Folding
removes the two elementwise passes over every activation of the ~100 BN layers of an R50.

:func:`fold_batch_norm` rebuilds the model from its config inside :func:`folding_scope`, where
``torch_layers.conv3d`` gives every conv a bias and ``torch_layers.batch_norm`` leaves out each BN
that directly follows such a conv, then copies the weights with the folded kernels and biases.
The result has the same class, layer names, inputs and outputs (and ``build_eval_model``), and
its outputs equal the original model's in inference. It is for inference only: its BN layers
are gone, so it cannot be trained, and its config still describes the unfolded model (save the
original model, not the folded one, as ``.keras``).
"""

import contextlib

import keras
import numpy as np

from slowfast_tf.models.common import torch_layers


@contextlib.contextmanager
def folding_scope():
    """Models built inside get convs with biases and no conv-following BatchNorm layers.

    Yields:
        dict ``{conv layer name: name of the BatchNorm layer folded into it}``, filled as the
        model is built.
    """
    if torch_layers._BN_FOLDING is not None:
        raise RuntimeError("folding_scope() is not reentrant")
    state = {"convs": {}, "pairs": {}}
    torch_layers._BN_FOLDING = state
    try:
        yield state["pairs"]
    finally:
        torch_layers._BN_FOLDING = None


def _layers_by_name(model):
    """Every layer with weights of ``model`` and of its nested models (not models), by name."""
    out = {}
    stack = [model]
    while stack:
        layer = stack.pop()
        for child in getattr(layer, "layers", []):
            if isinstance(child, keras.Model):
                stack.append(child)
                continue
            if not child.weights:
                continue
            if child.name in out and out[child.name] is not child:
                raise ValueError(f"Two layers are named {child.name!r}: cannot map the weights")
            out[child.name] = child
    return out


def _np(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def folded_conv_weights(kernel, bias, gamma, beta, mean, variance, epsilon):
    """Kernel ``[..., C_in, C_out]`` and bias ``[C_out]`` of ``conv -> BN`` as one conv.

    Computed in float64 and returned as float32 numpy arrays; ``bias`` and ``gamma`` may be
    None (no conv bias, BN without scale); ``beta`` None means a BN without center.
    """
    variance = np.asarray(variance, np.float64)
    scale = 1.0 / np.sqrt(variance + epsilon)
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    bias = 0.0 if bias is None else np.asarray(bias, np.float64)
    new_bias = (bias - np.asarray(mean, np.float64)) * scale
    if beta is not None:
        new_bias = new_bias + np.asarray(beta, np.float64)
    new_kernel = np.asarray(kernel, np.float64) * scale
    return new_kernel.astype(np.float32), new_bias.astype(np.float32)


def fold_batch_norm(model):
    """Returns an inference copy of ``model`` with every conv-following BN folded into the conv.

    Args:
        model: a model built from this package's layers (``torch_layers.conv3d`` /
            ``batch_norm``), e.g. a ``SlowFastVideoClassifier``; it is not modified.

    Returns:
        A model of the same class whose inference outputs equal ``model``'s (float32 rounding
        aside). BatchNorms that follow no conv (none in the SlowFast family) are kept.
    """
    with folding_scope() as pairs:
        folded = model.__class__.from_config(model.get_config())
    source = _layers_by_name(model)
    target = _layers_by_name(folded)
    for name, layer in target.items():
        original = source.get(name)
        if original is None:
            raise ValueError(f"Layer {name!r} of the folded model is not in the original model")
        if name not in pairs:
            if original.use_bias if hasattr(original, "use_bias") else True:
                layer.set_weights(original.get_weights())
            else:  # A conv that got a bias in the scope but precedes no BN: bias 0.
                zeros = np.zeros(layer.bias.shape, layer.bias.dtype)
                layer.set_weights([_np(original.kernel), zeros])
            continue
        bn = source[pairs[name]]
        kernel, bias = folded_conv_weights(
            _np(original.kernel),
            _np(original.bias) if original.use_bias else None,
            _np(bn.gamma) if bn.scale else None,
            _np(bn.beta) if bn.center else None,
            _np(bn.moving_mean),
            _np(bn.moving_variance),
            bn.epsilon,
        )
        layer.set_weights([kernel, bias])
    folded.batch_norm_folded = True
    return folded
