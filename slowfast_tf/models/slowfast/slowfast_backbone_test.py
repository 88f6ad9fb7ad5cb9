import numpy as np
import pytest

from slowfast_tf.models.slowfast.slowfast_backbone import SlowFastBackbone

TINY = dict(depth=18, width=8, beta_inv=4, num_frames=8, alpha=4, image_size=32)


def _clip(batch, frames, size=32):
    return np.random.default_rng(0).normal(size=(batch, frames, size, size, 3)).astype("float32")


def test_slowfast_endpoint_shapes():
    backbone = SlowFastBackbone(**TINY)
    out = backbone({"slow": _clip(2, 2), "fast": _clip(2, 8)})
    expected = {
        "slow_stem": (2, 2, 8, 8, 8), "fast_stem": (2, 8, 8, 8, 2),
        "slow_res2": (2, 2, 8, 8, 32), "fast_res2": (2, 8, 8, 8, 8),
        "slow_res3": (2, 2, 4, 4, 64), "fast_res3": (2, 8, 4, 4, 16),
        "slow_res4": (2, 2, 2, 2, 128), "fast_res4": (2, 8, 2, 2, 32),
        "slow_res5": (2, 2, 1, 1, 256), "fast_res5": (2, 8, 1, 1, 64),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert backbone.pathways == ("slow", "fast")
    assert backbone.get_layer("s1_fuse_conv_f2s").kernel.shape == (5, 1, 1, 2, 4)
    assert backbone.get_layer("s2_pathway0_res0_branch2_a_bn") is not None


def test_bad_num_frames_message_lists_valid_values():
    with pytest.raises(ValueError, match=r"multiple of alpha=4.*28, 32.*num_frames=30"):
        SlowFastBackbone(**{**TINY, "num_frames": 30})


def test_list_input_rejected():
    backbone = SlowFastBackbone(**TINY)
    with pytest.raises(ValueError, match="dict keyed by pathway"):
        backbone([_clip(1, 2), _clip(1, 8)])
    with pytest.raises(ValueError, match="keys"):
        backbone({"slow": _clip(1, 2)})
    with pytest.raises(ValueError, match="must have 8 frames"):
        backbone({"slow": _clip(1, 2), "fast": _clip(1, 6)})
