"""Parameter-name maps between PySlowFast, PyTorchVideo, Caffe2 and the Keras models.

PySlowFast names (``s2.pathway0_res0.branch2.a_bn.running_mean``) are the canonical names of
this package: every reader first turns its checkpoint into a PySlowFast-named state dict, and
the Keras layers are named after PySlowFast modules with ``.`` replaced by ``_``
(``s2_pathway0_res0_branch2_a_bn``). Every map here is a pure function on strings, so it is
tested without torch and the inverse maps build test fixtures in the other formats.

Name tables follow PySlowFast ``slowfast/utils/c2_model_loading.py`` (Caffe2 blobs) and the
PyTorchVideo module tree of ``create_slowfast`` / ``create_resnet`` (see REFERENCE_SPEC.md §6).
"""

import re

# Tensors that carry no model state and are dropped on purpose (never reported as unmapped).
TORCH_IGNORED_SUFFIXES = ("num_batches_tracked",)
# Caffe2 solver state stored next to the weights: momentum buffers, learning rate, iteration.
_CAFFE2_IGNORED = re.compile(r"(.*_momentum|lr|model_iter|lr_.*)")

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
# Caffe2 BN blob suffixes: scale, bias, running mean, running var. ``riv`` holds the variance
# itself (not its inverse), PySlowFast copies it straight into ``running_var``.
_C2_BN_TO_TORCH = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_TORCH_BN_TO_C2 = {v: k for k, v in _C2_BN_TO_TORCH.items()}
_C2_BN = "(s|b|rm|riv)"

HEAD_WEIGHT = "head.projection.weight"
HEAD_BIAS = "head.projection.bias"


def is_ignored_torch_name(name):
    """True for buffers without model state (``num_batches_tracked``)."""
    return name.endswith(TORCH_IGNORED_SUFFIXES)


def is_ignored_caffe2_name(name):
    """True for Caffe2 solver blobs (``*_momentum``, ``lr``, ``model_iter``)."""
    return _CAFFE2_IGNORED.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------
# Caffe2 <-> PySlowFast
# --------------------------------------------------------------------------------------------


def _pathway(t_prefix):
    return 1 if t_prefix else 0


def _caffe2_rules():
    """(regex, builder) pairs; the first full match wins. Fusion rules come before the
    generic residual rules because ``t_res3_3_branch2c_bn_subsample_w`` also starts like a
    fast-pathway ``branch2c`` blob."""
    bn = _C2_BN_TO_TORCH
    return [
        (r"t_pool1_subsample_w", lambda m: "s1_fuse.conv_f2s.weight"),
        (rf"t_pool1_subsample_bn_{_C2_BN}", lambda m: f"s1_fuse.bn.{bn[m[1]]}"),
        # The lateral after stage k hangs off the last fast block of that stage in Caffe2;
        # the block index carries no information for PySlowFast.
        (r"t_res(\d+)_\d+_branch2c_bn_subsample_w", lambda m: f"s{m[1]}_fuse.conv_f2s.weight"),
        (
            rf"t_res(\d+)_\d+_branch2c_bn_subsample_bn_{_C2_BN}",
            lambda m: f"s{m[1]}_fuse.bn.{bn[m[2]]}",
        ),
        (r"(t_)?conv1_w", lambda m: f"s1.pathway{_pathway(m[1])}_stem.conv.weight"),
        (
            rf"(t_)?res_conv1_bn_{_C2_BN}",
            lambda m: f"s1.pathway{_pathway(m[1])}_stem.bn.{bn[m[2]]}",
        ),
        (
            r"(t_)?res(\d+)_(\d+)_branch2([abc])_w",
            lambda m: f"s{m[2]}.pathway{_pathway(m[1])}_res{m[3]}.branch2.{m[4]}.weight",
        ),
        (
            rf"(t_)?res(\d+)_(\d+)_branch2([abc])_bn_{_C2_BN}",
            lambda m: f"s{m[2]}.pathway{_pathway(m[1])}_res{m[3]}.branch2.{m[4]}_bn.{bn[m[5]]}",
        ),
        (
            r"(t_)?res(\d+)_(\d+)_branch1_w",
            lambda m: f"s{m[2]}.pathway{_pathway(m[1])}_res{m[3]}.branch1.weight",
        ),
        (
            rf"(t_)?res(\d+)_(\d+)_branch1_bn_{_C2_BN}",
            lambda m: f"s{m[2]}.pathway{_pathway(m[1])}_res{m[3]}.branch1_bn.{bn[m[4]]}",
        ),
        (
            r"nonlocal_conv(\d+)_(\d+)_(theta|phi|g|out)_(w|b)",
            lambda m: (
                f"s{m[1]}.pathway0_nonlocal{m[2]}.conv_{m[3]}."
                + ("weight" if m[4] == "w" else "bias")
            ),
        ),
        (
            rf"nonlocal_conv(\d+)_(\d+)_bn_{_C2_BN}",
            lambda m: f"s{m[1]}.pathway0_nonlocal{m[2]}.bn.{bn[m[3]]}",
        ),
        (r"pred_(w|b)", lambda m: HEAD_WEIGHT if m[1] == "w" else HEAD_BIAS),
    ]


_CAFFE2_RULES = [(re.compile(p), f) for p, f in _caffe2_rules()]


def caffe2_to_pyslowfast(blob_name):
    """Caffe2 blob name -> PySlowFast parameter name, or None when no rule matches.

    Args:
        blob_name: str, e.g. ``"t_res3_0_branch2a_bn_riv"``.

    Returns:
        str or None, e.g. ``"s3.pathway1_res0.branch2.a_bn.running_var"``.
    """
    for pattern, build in _CAFFE2_RULES:
        match = pattern.fullmatch(blob_name)
        if match:
            return build(match)
    return None


_SF_RES = re.compile(
    r"s(\d+)\.pathway(\d+)_res(\d+)\.(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn)\.(\w+)"
)
_SF_STEM = re.compile(r"s1\.pathway(\d+)_stem\.(conv|bn)\.(\w+)")
_SF_FUSE = re.compile(r"s(\d+)_fuse\.(conv_f2s|bn)\.(\w+)")
_SF_NONLOCAL = re.compile(
    r"s(\d+)\.pathway0_nonlocal(\d+)\.(conv_theta|conv_phi|conv_g|conv_out|bn)\.(\w+)"
)


def _c2_param(param, is_bn):
    if is_bn:
        return "bn_" + _TORCH_BN_TO_C2[param]
    return {"weight": "w", "bias": "b"}[param]


def pyslowfast_to_caffe2(name, fast_blocks_per_stage=None):
    """Inverse of :func:`caffe2_to_pyslowfast` (used to build Caffe2 test fixtures).

    Args:
        name: str, a PySlowFast parameter name.
        fast_blocks_per_stage: dict ``{stage: num_blocks}`` of the fast pathway. Caffe2 names
            the lateral after stage ``k >= 2`` after the last fast block of that stage.

    Returns:
        str, the Caffe2 blob name.

    Raises:
        ValueError: for names with no Caffe2 equivalent.
    """
    if name in (HEAD_WEIGHT, HEAD_BIAS):
        return "pred_w" if name == HEAD_WEIGHT else "pred_b"
    m = _SF_STEM.fullmatch(name)
    if m:
        t = "t_" if m[1] == "1" else ""
        if m[2] == "conv":
            return f"{t}conv1_{_c2_param(m[3], False)}"
        return f"{t}res_conv1_{_c2_param(m[3], True)}"
    m = _SF_FUSE.fullmatch(name)
    if m:
        stage = int(m[1])
        if stage == 1:
            base = "t_pool1_subsample"
        else:
            if not fast_blocks_per_stage or stage not in fast_blocks_per_stage:
                raise ValueError(
                    "`fast_blocks_per_stage` must give the fast block count of every fused "
                    f"stage. Received: fast_blocks_per_stage={fast_blocks_per_stage} for {name}"
                )
            base = f"t_res{stage}_{fast_blocks_per_stage[stage] - 1}_branch2c_bn_subsample"
        return f"{base}_{_c2_param(m[3], m[2] == 'bn')}"
    m = _SF_RES.fullmatch(name)
    if m:
        stage, pathway, block, module, param = m.groups()
        t = "t_" if pathway == "1" else ""
        is_bn = module.endswith("_bn")
        branch = module.replace("branch2.", "branch2").removesuffix("_bn")
        return f"{t}res{stage}_{block}_{branch}_{_c2_param(param, is_bn)}"
    m = _SF_NONLOCAL.fullmatch(name)
    if m:
        stage, index, module, param = m.groups()
        if module == "bn":
            return f"nonlocal_conv{stage}_{index}_{_c2_param(param, True)}"
        return (
            f"nonlocal_conv{stage}_{index}_{module.removeprefix('conv_')}_{_c2_param(param, False)}"
        )
    raise ValueError(f"No Caffe2 blob name for PySlowFast parameter. Received: name={name!r}")


# --------------------------------------------------------------------------------------------
# PyTorchVideo <-> PySlowFast
# --------------------------------------------------------------------------------------------

_PTV_MULTI_STEM = re.compile(r"blocks\.(\d+)\.multipathway_blocks\.(\d+)\.(conv|norm)\.(\w+)")
_PTV_MULTI_FUSE = re.compile(r"blocks\.(\d+)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(\w+)")
_PTV_MULTI_RES = re.compile(
    r"blocks\.(\d+)\.multipathway_blocks\.(\d+)\.res_blocks\.(\d+)\.(.+)\.(\w+)"
)
_PTV_SINGLE_STEM = re.compile(r"blocks\.(\d+)\.(conv|norm)\.(\w+)")
_PTV_SINGLE_RES = re.compile(r"blocks\.(\d+)\.res_blocks\.(\d+)\.(.+)\.(\w+)")
_PTV_HEAD = re.compile(r"(?:blocks\.\d+|detection_head)\.proj\.(weight|bias)")

# PTV residual sub-module -> PySlowFast residual sub-module.
_PTV_RES_MODULES = {
    "branch1_conv": "branch1",
    "branch1_norm": "branch1_bn",
    "branch2.conv_a": "branch2.a",
    "branch2.norm_a": "branch2.a_bn",
    "branch2.conv_b": "branch2.b",
    "branch2.norm_b": "branch2.b_bn",
    "branch2.conv_c": "branch2.c",
    "branch2.norm_c": "branch2.c_bn",
}
_SF_RES_MODULES = {v: k for k, v in _PTV_RES_MODULES.items()}


# PyTorchVideo's detectors (``DetectionBBoxNetwork``, e.g. ``slowfast_r50_detection``) hold the
# backbone under ``model.`` and the head under ``detection_head.`` (``detection_head.proj``).
_PTV_DETECTION_BODY = "model.blocks."


def _ptv_body_name(name):
    """``model.blocks.N...`` (PTV detector backbone) -> ``blocks.N...``; other names unchanged."""
    return name[len("model.") :] if name.startswith(_PTV_DETECTION_BODY) else name


def ptv_stage_numbers(names):
    """PTV block index -> PySlowFast stage number (2..5) for the residual stages.

    PTV numbers its ``blocks`` sequentially and parameter-free blocks (the C2D/I3D temporal
    pool after res2) shift the indices, so stages are numbered by order of appearance.
    """
    indices = set()
    for name in map(_ptv_body_name, names):
        m = re.match(r"blocks\.(\d+)\.(?:multipathway_blocks\.\d+\.)?res_blocks\.", name)
        if m:
            indices.add(int(m[1]))
    return {block: stage for stage, block in enumerate(sorted(indices), start=2)}


def ptv_to_pyslowfast(name, stage_numbers):
    """PyTorchVideo parameter name -> PySlowFast parameter name, or None if unknown.

    Args:
        name: str, e.g. ``"blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"``.
        stage_numbers: dict from :func:`ptv_stage_numbers` over the whole state dict.

    Returns:
        str or None, e.g. ``"s2.pathway0_res0.branch2.a.weight"``.
    """
    name = _ptv_body_name(name)
    m = _PTV_HEAD.fullmatch(name)
    if m:
        return f"head.projection.{m[1]}"
    m = _PTV_MULTI_RES.fullmatch(name) or _PTV_SINGLE_RES.fullmatch(name)
    if m:
        groups = m.groups()
        if len(groups) == 5:
            block, pathway, res, module, param = groups
        else:
            (block, res, module, param), pathway = groups, "0"
        stage = stage_numbers.get(int(block))
        sf_module = _PTV_RES_MODULES.get(module)
        if stage is None or sf_module is None:
            return None
        return f"s{stage}.pathway{pathway}_res{res}.{sf_module}.{param}"
    m = _PTV_MULTI_STEM.fullmatch(name)
    if m and m[1] == "0":
        return f"s1.pathway{m[2]}_stem.{'conv' if m[3] == 'conv' else 'bn'}.{m[4]}"
    m = _PTV_SINGLE_STEM.fullmatch(name)
    if m and m[1] == "0":
        return f"s1.pathway0_stem.{'conv' if m[2] == 'conv' else 'bn'}.{m[3]}"
    m = _PTV_MULTI_FUSE.fullmatch(name)
    if m:
        # The fusion of PTV block j follows stage j + 1 (block 0 is the stem, i.e. s1).
        block = int(m[1])
        stage = 1 if block == 0 else stage_numbers.get(block)
        if stage is None:
            return None
        module = "conv_f2s" if m[2] == "conv_fast_to_slow" else "bn"
        return f"s{stage}_fuse.{module}.{m[3]}"
    return None


def pyslowfast_to_ptv(name, multipathway=True, head_block=None):
    """Inverse of :func:`ptv_to_pyslowfast` for models without an extra pool block.

    Args:
        name: str, a PySlowFast parameter name.
        multipathway: bool, True for ``create_slowfast`` layouts, False for ``create_resnet``.
        head_block: int, PTV block index of the head; defaults to 6 (SlowFast) or 5 (ResNet).

    Returns:
        str, the PTV parameter name.

    Raises:
        ValueError: for names PTV has no module for (non-local blocks).
    """
    if head_block is None:
        head_block = 6 if multipathway else 5
    if name in (HEAD_WEIGHT, HEAD_BIAS):
        return f"blocks.{head_block}.proj.{name.rsplit('.', 1)[1]}"
    m = _SF_STEM.fullmatch(name)
    if m:
        module = "conv" if m[2] == "conv" else "norm"
        if multipathway:
            return f"blocks.0.multipathway_blocks.{m[1]}.{module}.{m[3]}"
        return f"blocks.0.{module}.{m[3]}"
    m = _SF_FUSE.fullmatch(name)
    if m and multipathway:
        module = "conv_fast_to_slow" if m[2] == "conv_f2s" else "norm"
        return f"blocks.{int(m[1]) - 1}.multipathway_fusion.{module}.{m[3]}"
    m = _SF_RES.fullmatch(name)
    if m:
        stage, pathway, block, module, param = m.groups()
        ptv_module = _SF_RES_MODULES[module]
        if multipathway:
            return (
                f"blocks.{int(stage) - 1}.multipathway_blocks.{pathway}.res_blocks.{block}."
                f"{ptv_module}.{param}"
            )
        return f"blocks.{int(stage) - 1}.res_blocks.{block}.{ptv_module}.{param}"
    raise ValueError(f"No PyTorchVideo parameter for PySlowFast name. Received: name={name!r}")


# --------------------------------------------------------------------------------------------
# PySlowFast -> Keras
# --------------------------------------------------------------------------------------------


def pyslowfast_to_keras(name):
    """PySlowFast parameter name -> ``(keras_layer_name, torch_param)``.

    ``s2.pathway0_res0.branch2.a_bn.running_mean`` -> ``("s2_pathway0_res0_branch2_a_bn",
    "running_mean")``; ``head.projection.weight`` -> ``("head_projection", "weight")``.
    """
    module, _, param = name.rpartition(".")
    if not module:
        raise ValueError(f"Expected a dotted parameter name. Received: name={name!r}")
    return module.replace(".", "_"), param


def looks_like_ptv(names):
    """True when a state dict uses PyTorchVideo names (``blocks.N...``, or ``model.blocks.N...``
    plus ``detection_head...`` for a PTV detector)."""
    names = list(names)
    return bool(names) and sum(
        _ptv_body_name(n).startswith("blocks.") for n in names
    ) > len(names) // 2


def pyslowfast_to_ptv_detection(name):
    """PySlowFast name -> PyTorchVideo ``create_slowfast_with_roi_head`` name (the inverse of
    :func:`ptv_to_pyslowfast` for ``slowfast_r50_detection``-style state dicts)."""
    if name in (HEAD_WEIGHT, HEAD_BIAS):
        return f"detection_head.proj.{name.rsplit('.', 1)[1]}"
    return "model." + pyslowfast_to_ptv(name, multipathway=True)
