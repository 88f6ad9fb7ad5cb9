"""AVA detection presets: metadata and exact parameter counts (PyTorch convention)."""

import pytest

from slowfast_tf.models import count_flops, count_params
from slowfast_tf.models.slowfast import SlowFastDetector, detection

# PySlowFast / PyTorchVideo parameter counts (BN statistics excluded), see the issue and README.
PARAMS = {
    "slowfast_r50_ava_32x2": 33_828_888,  # configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml
    "slowfast_r101_50_50_ava_32x2": 59_342_488,  # configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml
    "slow_r50_ava_4x16": 31_798_416,  # Slow R50 backbone (31,634,496) + Linear(2048, 80)
    "slowfast_r50_detection": 33_828_888,  # PyTorchVideo create_slowfast_with_roi_head()
}

# GFLOPs (fvcore convention) of one clip with one box at the preset's test crop; the RoI head
# adds only the projection (fvcore has no RoIAlign handler either). Printed in the README.
GFLOPS = {"slowfast_r50_ava_32x2": (224, 74.49), "slow_r50_ava_4x16": (256, 41.69)}


def test_preset_metadata():
    assert detection.list_presets() == sorted(PARAMS)
    sf = detection.get_preset("slowfast_r50_ava_32x2")
    assert sf.frames == {"slow": 8, "fast": 32} and sf.sampling_rate == 2
    assert (sf.train_crop_size, sf.test_crop_size, sf.aligned) == (224, 224, True)
    r101 = detection.get_preset("slowfast_r101_50_50_ava_32x2")
    assert (r101.test_crop_size, r101.aligned, r101.backbone["fusion_kernel_size"]) == (256, False, 5)
    slow = detection.get_preset("slow_r50_ava_4x16")
    assert slow.frames == {"slow": 4} and slow.sampling_rate == 16
    assert slow.box_score_threshold == 0.9 and sf.box_score_threshold == 0.8
    for preset in detection.PRESETS.values():
        assert preset.backbone["spatial_strides"] == (1, 2, 2, 1)
        assert preset.backbone["spatial_dilations"] == (1, 1, 1, 2)


@pytest.mark.parametrize(
    "name",
    [
        "slowfast_r50_ava_32x2",
        pytest.param("slowfast_r101_50_50_ava_32x2", marks=pytest.mark.slow),
        "slow_r50_ava_4x16",
        pytest.param("slowfast_r50_detection", marks=pytest.mark.slow),
    ],
)
def test_exact_parameter_counts(name):
    model = detection.build_model(name)
    assert isinstance(model, SlowFastDetector)
    assert model.output_shape == (None, None, 80)
    assert model.backbone.output_stride == 16 and model.spatial_scale == 1 / 16
    assert count_params(model) == PARAMS[name]
    if name in GFLOPS:
        side, want = GFLOPS[name]
        shapes = {k: (1, t, side, side, 3) for k, t in detection.get_preset(name).frames.items()}
        shapes.update(boxes=(1, 1, 4), box_mask=(1, 1))
        assert round(count_flops(model, input_shapes=shapes) / 1e9, 2) == want
