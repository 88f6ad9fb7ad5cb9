"""Numerical parity with the PyTorch reference: PyTorchVideo's ``create_slowfast`` (same layout
as PySlowFast) with random weights and BN statistics, copied into our model by name."""

import re
import sys
import types

import numpy as np
import pytest

from slowfast_tf.models import build_model

torch = pytest.importorskip("torch")


def _import_create_slowfast():
    # pytorchvideo.models.head imports torchvision.ops.RoIAlign (detection only); torchvision is
    # not installable with this torch build, so stub it for the classification model.
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
            ops.RoIAlign = object
            stub.ops = ops
            sys.modules.update({"torchvision": stub, "torchvision.ops": ops})
    slowfast = pytest.importorskip("pytorchvideo.models.slowfast")
    return slowfast.create_slowfast


def _keras_name(ptv_name):
    """PTV module path -> our layer name (REFERENCE_SPEC section 6)."""
    rules = [
        (r"blocks\.0\.multipathway_blocks\.(\d)\.conv", r"s1_pathway\1_stem_conv"),
        (r"blocks\.0\.multipathway_blocks\.(\d)\.norm", r"s1_pathway\1_stem_bn"),
        (r"blocks\.(\d)\.multipathway_fusion\.conv_fast_to_slow", r"s{\1}_fuse_conv_f2s"),
        (r"blocks\.(\d)\.multipathway_fusion\.norm", r"s{\1}_fuse_bn"),
        (r"blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_conv",
         r"s{\1}_pathway\2_res\3_branch1"),
        (r"blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch1_norm",
         r"s{\1}_pathway\2_res\3_branch1_bn"),
        (r"blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.conv_(\w)",
         r"s{\1}_pathway\2_res\3_branch2_\4"),
        (r"blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_(\w)",
         r"s{\1}_pathway\2_res\3_branch2_\4_bn"),
        (r"blocks\.6\.proj", "head_projection"),
    ]  # fmt: skip
    for pattern, repl in rules:
        if re.fullmatch(pattern, ptv_name):
            name = re.sub(pattern, repl, ptv_name)
            # PTV block k-1 holds stage k.
            return re.sub(r"\{(\d)\}", lambda m: str(int(m.group(1)) + 1), name)
    return None


@pytest.mark.slow
def test_matches_pytorchvideo_slowfast():
    create_slowfast = _import_create_slowfast()
    torch.manual_seed(0)
    ref = create_slowfast(
        model_depth=50,
        model_num_class=7,
        slowfast_channel_reduction_ratio=(4,),
        slowfast_fusion_conv_kernel_size=(5, 1, 1),
        slowfast_fusion_conv_stride=(4, 1, 1),
        stem_dim_outs=(8, 2),
        head_pool_kernel_sizes=((2, 1, 1), (8, 1, 1)),
    ).eval()
    model = build_model(
        "slowfast_r50_8x8", num_classes=7, width=8, beta_inv=4, num_frames=8,
        fusion_kernel_size=5, image_size=32,
    )  # fmt: skip
    backbone = model.backbone
    copied = 0
    with torch.no_grad():
        for name, module in ref.named_modules():
            target = _keras_name(name)
            if target is None:
                continue
            layer = model.get_layer(target) if target == "head_projection" else backbone.get_layer(target)
            if isinstance(module, torch.nn.Conv3d):
                layer.kernel.assign(module.weight.numpy().transpose(2, 3, 4, 1, 0))
            elif isinstance(module, torch.nn.BatchNorm3d):
                # Random affine and statistics so that every BN matters in eval mode.
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(0.2 * torch.randn_like(tensor) + (1.0 if tensor is module.weight else 0.0))
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
                layer.set_weights(
                    [t.numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)]
                )
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(0.1 * torch.randn_like(module.weight))
                layer.set_weights([module.weight.numpy().T, module.bias.numpy()])
            else:
                continue
            copied += 1
    assert copied == len([w for w in model.weights if w.path.endswith(("kernel", "gamma"))])

    rng = np.random.default_rng(0)
    fast = rng.normal(size=(2, 8, 32, 32, 3)).astype("float32")
    slow = fast[:, [0, 7]]
    want = ref([torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()) for x in (slow, fast)])
    got = model({"slow": slow, "fast": fast}, training=False)
    want = want.detach().numpy()
    assert np.abs(want).max() > 0.05  # logits well above the tolerance
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
