"""``fold_batch_norm``: same inference outputs as the unfolded model, no BN left, names kept."""

import keras
import numpy as np
import pytest

from slowfast_tf import compat
from slowfast_tf.models import build_model
from slowfast_tf.models.common import bn_folding
from slowfast_tf.models.common.time_folded_conv import TimeFoldedConv3D
from slowfast_tf.testing import serving_models


def _randomize_batch_norm(model, seed=0):
    """Random BN statistics and affine weights: identity BNs would make folding a no-op."""
    serving_models.randomize_batch_norm(model, np.random.default_rng(seed))


def _batch_norms(model):
    return [
        layer for layer in compat.flatten_layers(model, include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("slowfast_nln_r50_8x8",
         dict(depth=18, width=8, beta_inv=4, num_frames=8, image_size=32,
              nonlocal_locations=[[], [1], [1], []])),
        ("r2plus1d_r18", dict(base_filters=4, num_frames=8, image_size=32)),
    ],
)
def test_folded_outputs_equal_unfolded(preset, overrides):
    keras.utils.set_random_seed(0)
    model = build_model(preset, num_classes=5, **overrides)
    _randomize_batch_norm(model)
    folded = bn_folding.fold_batch_norm(model)
    assert len(_batch_norms(model)) > 10 and _batch_norms(folded) == []
    assert type(folded) is type(model) and folded.batch_norm_folded
    def conv_shapes(m):
        return {
            layer.name: tuple(layer.kernel.shape)
            for layer in compat.flatten_layers(m, include_self=False)
            if isinstance(layer, keras.layers.Conv3D)
        }

    assert conv_shapes(folded) == conv_shapes(model)
    if preset.startswith("slowfast"):
        # Inference only: the [5, 7, 7] fast stem runs as a plain Conv3D forward (faster there),
        # while the trainable model keeps the time-folded one.
        stem = "s1_pathway1_stem_conv"
        assert type(model.backbone.get_layer(stem)) is TimeFoldedConv3D
        assert type(folded.backbone.get_layer(stem)) is keras.layers.Conv3D
    rng = np.random.default_rng(1)
    x = keras.tree.map_structure(
        lambda v: rng.normal(size=(2, *v.shape[1:])).astype("float32"), model.backbone.input
    )
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(folded(x, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got / scale, expected / scale, atol=1e-5, rtol=0)
    # The original model is untouched.
    assert len(_batch_norms(model)) == len(
        [w for w in model.weights if w.path.endswith("moving_mean")]
    )


def test_folded_conv_weights_formula():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 3, 3, 2, 4))
    x = rng.normal(size=(3, 3, 2))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.5, 1.5, 4)
    conv = np.einsum("hwc,hwcf->f", x, kernel[0])
    bn = gamma * (conv - mean) / np.sqrt(var + 1e-5) + beta
    new_kernel, new_bias = bn_folding.folded_conv_weights(kernel, None, gamma, beta, mean, var, 1e-5)
    np.testing.assert_allclose(np.einsum("hwc,hwcf->f", x, new_kernel[0]) + new_bias, bn,
                               rtol=1e-5, atol=1e-5)


def test_scope_is_not_reentrant():
    with bn_folding.folding_scope():
        with pytest.raises(RuntimeError, match="reentrant"):
            with bn_folding.folding_scope():
                pass
