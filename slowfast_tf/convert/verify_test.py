"""``reference_arch``: which Keras models have a PyTorchVideo twin, and with which settings."""

import importlib.util

import numpy as np
import pytest

from slowfast_tf.convert import keras_to_pyslowfast_state, torch_reference, verify
from slowfast_tf.models import build_model

needs_ptv = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("pytorchvideo") is None,
    reason="needs torch and pytorchvideo (dev extra)",
)
TINY = dict(depth=18, width=8, image_size=32, num_frames=8)


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("slowfast_r50_8x8", {}),  # depth 18: PyTorchVideo has no R18 video ResNet
        ("fast_r50_32x2", {}),
        ("slowfast_nln_r50_8x8", {"nonlocal_locations": [[], [1], [1], []]}),
    ],
)
def test_models_without_a_ptv_twin(preset, overrides):
    model = build_model(preset, num_classes=3, **{**TINY, **overrides})
    assert verify.reference_arch(model) is None


def test_reference_arch_reads_the_keras_architecture():
    model = build_model("slowfast_r50_4x16", num_classes=7, width=16, train_crop_size=96)
    arch = verify.reference_arch(model)
    assert arch == torch_reference.ReferenceArch(
        pathways=("slow", "fast"),
        family="slowfast",
        depth=50,
        alpha=8,
        beta_inv=8,
        width=16,
        fusion_kernel=5,
        slow_frames=4,
        head_pool_hw=3,
        num_classes=7,
    )


@needs_ptv
@pytest.mark.slow
def test_r101_50_50_per_block_temporal_kernels_load_strictly_into_ptv():
    # R101 "50_50": only the first 6 res4 blocks have a temporal kernel. The Keras weights,
    # renamed to PTV, must fill the PTV model exactly (every key, every shape).
    model = build_model("slowfast_r101_50_50_8x8", num_classes=5, width=8, train_crop_size=64)
    arch = verify.reference_arch(model)
    assert arch.depth == 101 and arch.slow_temporal_kernels[2] == (3,) * 6 + (1,) * 17
    assert arch.fast_temporal_kernels[2] == (3,) * 6 + (1,) * 17
    reference = torch_reference.build_ptv_model(arch)
    state = verify.pyslowfast_state_to_ptv(keras_to_pyslowfast_state(model), arch)
    expected = {k: v for k, v in reference.state_dict().items() if "num_batches" not in k}
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        assert tuple(state[name].shape) == tuple(value.shape), name
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert unexpected == [] and all(m.endswith("num_batches_tracked") for m in missing)
    conv = reference.blocks[3].multipathway_blocks[0].res_blocks[7].branch2.conv_a.weight
    keras_conv = model.backbone.get_layer("s4_pathway0_res7_branch2_a").kernel.numpy()
    np.testing.assert_array_equal(conv.detach().numpy(), np.transpose(keras_conv, (4, 3, 0, 1, 2)))


def test_reference_arch_of_detectors():
    # Detectors: AVA strides, RoI head (head_pool_hw 1); R101 50_50's partial temporal kernels
    # have no create_slowfast_with_roi_head twin.
    model = build_model("slowfast_r50_detection", width=8, num_frames=16)
    arch = verify.reference_arch(model)
    assert arch == torch_reference.ReferenceArch(
        pathways=("slow", "fast"),
        family="slowfast",
        depth=50,
        alpha=4,
        beta_inv=8,
        width=8,
        fusion_kernel=7,
        slow_frames=4,
        head_pool_hw=1,
        num_classes=80,
    )
    assert verify.reference_arch(build_model("slowfast_r101_50_50_ava_32x2", width=8)) is None
