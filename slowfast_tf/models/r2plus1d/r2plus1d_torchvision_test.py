"""Parity with torchvision's ``VideoResNet`` layout: same weights -> same logits.

torchvision itself is not a dependency, so the test builds a small torch module with the same
structure and parameter names as ``torchvision.models.video.resnet.VideoResNet`` (stem without
max-pool, ``layerK.J.conv1/conv2/downsample``, ``Conv2Plus1D`` = conv, BN, ReLU, conv, ``fc``).
"""

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from slowfast_tf.models.r2plus1d import build_model, variant_conv_types  # noqa: E402
from slowfast_tf.models.r2plus1d.r2plus1d_backbone import factorized_mid_channels  # noqa: E402
from slowfast_tf.models.r2plus1d.r2plus1d_torchvision import (  # noqa: E402
    load_torchvision_weights,
    torchvision_layer_map,
)

TINY = {"depth": 10, "base_filters": 8, "num_frames": 8, "image_size": 32}


def _slot(kind, cin, cout, mid, stride):
    """One torchvision conv "builder": Conv3DSimple, Conv3DNoTemporal or Conv2Plus1D."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                         bias=False)
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(),
        nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


class _Block(nn.Module):
    def __init__(self, kind, cin, cout, stride):
        super().__init__()
        mid = factorized_mid_channels(cin, cout, 3, 3)  # torchvision: one M per block
        self.conv1 = nn.Sequential(_slot(kind, cin, cout, mid, stride), nn.BatchNorm3d(cout),
                                   nn.ReLU())
        self.conv2 = nn.Sequential(_slot(kind, cout, cout, mid, 1), nn.BatchNorm3d(cout))
        self.downsample = None
        if stride != 1 or cin != cout:
            st = 1 if kind == "2d" else stride
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(st, stride, stride), bias=False),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv2(self.conv1(x)) + residual)


class _TorchVideoResNet(nn.Module):
    def __init__(self, variant, width, num_classes, num_frames=8):
        super().__init__()
        stem_kind, *kinds = variant_conv_types(variant)
        if stem_kind == "collapse":  # R2D (not a torchvision model): frames folded into conv1
            self.stem = nn.Sequential(
                nn.Conv3d(3, width, (num_frames, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                          bias=False),
                nn.BatchNorm3d(width), nn.ReLU(),
            )
        elif stem_kind == "2plus1d":
            self.stem = nn.Sequential(
                nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
                nn.BatchNorm3d(45), nn.ReLU(),
                nn.Conv3d(45, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
                nn.BatchNorm3d(width), nn.ReLU(),
            )
        else:
            kt = 3 if stem_kind == "3d" else 1
            self.stem = nn.Sequential(
                nn.Conv3d(3, width, (kt, 7, 7), stride=(1, 2, 2), padding=(kt // 2, 3, 3),
                          bias=False),
                nn.BatchNorm3d(width), nn.ReLU(),
            )
        cin = width
        for k, kind in enumerate(kinds):
            cout = width * 2**k
            setattr(self, f"layer{k + 1}", nn.Sequential(_Block(kind, cin, cout, 1 if k == 0 else 2)))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
        return self.fc(x.mean(dim=(2, 3, 4)))


def _randomize(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.1, generator=generator)
                m.running_mean.normal_(0.0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
            elif isinstance(m, nn.Linear):
                # Unit-scale logits, so a wrong kernel layout shows up far above the tolerance.
                m.weight.normal_(0.0, 1.0, generator=generator)
    return module.eval()


@pytest.mark.parametrize(
    "preset, variant",
    [
        ("r2plus1d_r18_torchvision", "r2plus1d"),
        ("mc3_r18", "mc3"),
        ("rmc3_r18", "rmc3"),
        ("r2d_r18", "r2d"),
    ],
)
def test_logits_match_torch_video_resnet(preset, variant):
    torch.manual_seed(0)
    reference = _randomize(_TorchVideoResNet(variant, width=8, num_classes=5), seed=1)
    model = build_model(preset, num_classes=5, **TINY)
    unused = load_torchvision_weights(model, reference.state_dict())
    assert unused == []
    clip = np.random.RandomState(2).randn(2, 8, 32, 32, 3).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(clip.transpose(0, 4, 1, 2, 3))).numpy()
    actual = keras.ops.convert_to_numpy(model({"slow": clip}, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_layer_map_names():
    model = build_model("r2plus1d_r18_torchvision", num_classes=5, **TINY)
    mapping = torchvision_layer_map(model.backbone)
    assert mapping["s1_pathway0_stem_conv_temporal"] == "stem.3"
    assert mapping["s1_pathway0_stem_bn"] == "stem.4"
    assert mapping["s3_pathway0_res0_branch2_b_spatial_bn"] == "layer2.0.conv2.0.1"
    assert mapping["s3_pathway0_res0_branch2_b_bn"] == "layer2.0.conv2.1"
    assert mapping["s5_pathway0_res0_branch1"] == "layer4.0.downsample.0"


def test_mismatched_state_dict_raises():
    reference = _TorchVideoResNet("r3d", width=8, num_classes=5)
    model = build_model("mc3_r18", num_classes=5, **TINY)
    with pytest.raises(ValueError, match="Shape mismatch"):
        load_torchvision_weights(model, reference.state_dict())
    state = dict(reference.state_dict())
    del state["fc.bias"]
    with pytest.raises(ValueError, match="fc.bias"):
        load_torchvision_weights(build_model("r3d_r18", num_classes=5, **TINY), state)
