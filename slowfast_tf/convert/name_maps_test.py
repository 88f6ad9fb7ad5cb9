"""Name maps: Caffe2 regexes, PTV renames and their inverses (pure string tests, no torch)."""

import pytest

from slowfast_tf.convert import name_maps

CAFFE2_CASES = {
    "conv1_w": "s1.pathway0_stem.conv.weight",
    "t_conv1_w": "s1.pathway1_stem.conv.weight",
    "res_conv1_bn_s": "s1.pathway0_stem.bn.weight",
    "t_res_conv1_bn_riv": "s1.pathway1_stem.bn.running_var",
    "res2_0_branch1_w": "s2.pathway0_res0.branch1.weight",
    "res2_0_branch1_bn_rm": "s2.pathway0_res0.branch1_bn.running_mean",
    "res4_5_branch2b_w": "s4.pathway0_res5.branch2.b.weight",
    "res4_5_branch2c_bn_b": "s4.pathway0_res5.branch2.c_bn.bias",
    "t_res3_0_branch2a_bn_riv": "s3.pathway1_res0.branch2.a_bn.running_var",
    "t_res5_2_branch2c_w": "s5.pathway1_res2.branch2.c.weight",
    "t_pool1_subsample_w": "s1_fuse.conv_f2s.weight",
    "t_pool1_subsample_bn_s": "s1_fuse.bn.weight",
    "t_res2_2_branch2c_bn_subsample_w": "s2_fuse.conv_f2s.weight",
    "t_res4_5_branch2c_bn_subsample_bn_rm": "s4_fuse.bn.running_mean",
    "nonlocal_conv3_1_theta_w": "s3.pathway0_nonlocal1.conv_theta.weight",
    "nonlocal_conv4_5_g_b": "s4.pathway0_nonlocal5.conv_g.bias",
    "nonlocal_conv4_3_out_w": "s4.pathway0_nonlocal3.conv_out.weight",
    "nonlocal_conv4_3_bn_s": "s4.pathway0_nonlocal3.bn.weight",
    "pred_w": "head.projection.weight",
    "pred_b": "head.projection.bias",
}


@pytest.mark.parametrize("blob,expected", sorted(CAFFE2_CASES.items()))
def test_caffe2_to_pyslowfast(blob, expected):
    assert name_maps.caffe2_to_pyslowfast(blob) == expected


@pytest.mark.parametrize("blob,expected", sorted(CAFFE2_CASES.items()))
def test_pyslowfast_to_caffe2_inverts(blob, expected):
    fast_blocks = {2: 3, 3: 4, 4: 6, 5: 3}
    assert name_maps.pyslowfast_to_caffe2(expected, fast_blocks) == blob


def test_caffe2_unknown_and_ignored_names():
    assert name_maps.caffe2_to_pyslowfast("res2_0_branch2a_w_grad") is None
    assert name_maps.caffe2_to_pyslowfast("something_else") is None
    for name in ("conv1_w_momentum", "res2_0_branch2a_bn_s_momentum", "lr", "model_iter"):
        assert name_maps.is_ignored_caffe2_name(name), name
    assert not name_maps.is_ignored_caffe2_name("conv1_w")


def test_pyslowfast_to_caffe2_needs_fast_block_counts_for_late_laterals():
    with pytest.raises(ValueError, match="fast_blocks_per_stage"):
        name_maps.pyslowfast_to_caffe2("s3_fuse.conv_f2s.weight")


PTV_SLOWFAST = {
    "blocks.0.multipathway_blocks.1.conv.weight": "s1.pathway1_stem.conv.weight",
    "blocks.0.multipathway_blocks.0.norm.running_var": "s1.pathway0_stem.bn.running_var",
    "blocks.0.multipathway_fusion.conv_fast_to_slow.weight": "s1_fuse.conv_f2s.weight",
    "blocks.3.multipathway_fusion.norm.bias": "s4_fuse.bn.bias",
    "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight": (
        "s2.pathway0_res0.branch1.weight"
    ),
    "blocks.2.multipathway_blocks.1.res_blocks.3.branch2.norm_c.weight": (
        "s3.pathway1_res3.branch2.c_bn.weight"
    ),
    "blocks.3.multipathway_blocks.1.res_blocks.5.branch2.conv_a.weight": (
        "s4.pathway1_res5.branch2.a.weight"
    ),
    "blocks.4.multipathway_blocks.0.res_blocks.2.branch2.conv_b.weight": (
        "s5.pathway0_res2.branch2.b.weight"
    ),
    "blocks.6.proj.weight": "head.projection.weight",
}


def _stages(names):
    return name_maps.ptv_stage_numbers(list(names))


def test_ptv_slowfast_names_round_trip():
    stages = _stages(PTV_SLOWFAST)
    assert stages == {1: 2, 2: 3, 3: 4, 4: 5}
    for ptv, sf in PTV_SLOWFAST.items():
        assert name_maps.ptv_to_pyslowfast(ptv, stages) == sf
        assert name_maps.pyslowfast_to_ptv(sf, multipathway=True) == ptv


def test_ptv_single_pathway_names_and_pool_block_shift():
    names = [
        "blocks.0.conv.weight",
        "blocks.1.res_blocks.0.branch2.conv_a.weight",
        # C2D / I3D: blocks.2 is the parameter-free temporal pool, so res3 is blocks.3.
        "blocks.3.res_blocks.0.branch1_norm.running_mean",
        "blocks.4.res_blocks.0.branch2.conv_a.weight",
        "blocks.5.res_blocks.2.branch2.norm_b.bias",
        "blocks.6.proj.bias",
    ]
    stages = _stages(names)
    mapped = [name_maps.ptv_to_pyslowfast(n, stages) for n in names]
    assert mapped == [
        "s1.pathway0_stem.conv.weight",
        "s2.pathway0_res0.branch2.a.weight",
        "s3.pathway0_res0.branch1_bn.running_mean",
        "s4.pathway0_res0.branch2.a.weight",
        "s5.pathway0_res2.branch2.b_bn.bias",
        "head.projection.bias",
    ]
    assert name_maps.pyslowfast_to_ptv(mapped[1], multipathway=False) == names[1]


def test_ptv_unknown_names_return_none():
    stages = _stages(PTV_SLOWFAST)
    assert (
        name_maps.ptv_to_pyslowfast(
            "blocks.1.multipathway_blocks.0.res_blocks.0.extra.weight", stages
        )
        is None
    )
    assert (
        name_maps.ptv_to_pyslowfast("blocks.9.res_blocks.0.branch2.conv_a.weight", stages) is None
    )
    assert name_maps.ptv_to_pyslowfast("totally.unrelated", stages) is None


def test_pyslowfast_to_keras_layer_names():
    assert name_maps.pyslowfast_to_keras("s2.pathway0_res0.branch2.a_bn.running_mean") == (
        "s2_pathway0_res0_branch2_a_bn",
        "running_mean",
    )
    assert name_maps.pyslowfast_to_keras("s1_fuse.conv_f2s.weight") == (
        "s1_fuse_conv_f2s",
        "weight",
    )
    assert name_maps.pyslowfast_to_keras("s4.pathway0_nonlocal1.conv_theta.bias") == (
        "s4_pathway0_nonlocal1_conv_theta",
        "bias",
    )
    assert name_maps.pyslowfast_to_keras("head.projection.weight") == ("head_projection", "weight")
    with pytest.raises(ValueError, match="Received: name="):
        name_maps.pyslowfast_to_keras("weight")


def test_looks_like_ptv():
    assert name_maps.looks_like_ptv(PTV_SLOWFAST)
    assert not name_maps.looks_like_ptv(CAFFE2_CASES.values())
    assert not name_maps.looks_like_ptv([])


def test_ptv_detection_names():
    """``SLOWFAST_8x8_R50_DETECTION.pyth``: backbone under ``model.``, head ``detection_head``."""
    names = [
        "model.blocks.0.multipathway_blocks.1.conv.weight",
        "model.blocks.0.multipathway_fusion.conv_fast_to_slow.weight",
        "model.blocks.1.multipathway_blocks.0.res_blocks.0.branch2.norm_a.running_var",
        "model.blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_c.weight",
        "detection_head.proj.weight",
        "detection_head.proj.bias",
    ]
    assert name_maps.looks_like_ptv(names)
    stages = name_maps.ptv_stage_numbers(names)
    assert stages == {1: 2, 4: 3}  # only the stages present in this short list
    stages = {1: 2, 2: 3, 3: 4, 4: 5}
    want = [
        "s1.pathway1_stem.conv.weight",
        "s1_fuse.conv_f2s.weight",
        "s2.pathway0_res0.branch2.a_bn.running_var",
        "s5.pathway1_res2.branch2.c.weight",
        "head.projection.weight",
        "head.projection.bias",
    ]
    assert [name_maps.ptv_to_pyslowfast(n, stages) for n in names] == want
    assert [name_maps.pyslowfast_to_ptv_detection(n) for n in want] == names
    # A classification name under an unrelated "model." module is not rewritten.
    assert name_maps.ptv_to_pyslowfast("model.head.proj.weight", stages) is None
