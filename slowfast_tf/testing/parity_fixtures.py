"""Reference checkpoints in all three formats, for the parity tests and the tools script.

One PyTorchVideo model (random weights, randomised BN statistics) is written as:
- a PyTorchVideo hub ``.pyth`` (``{"model_state": ptv_state_dict}``),
- a PySlowFast ``.pyth`` (the same tensors renamed with the REFERENCE_SPEC §6 table, plus the
  ``epoch`` / ``optimizer_state`` / ``cfg`` entries PySlowFast saves),
- a PySlowFast ``.pyth`` of a wrapped PyTorchVideo model (``model.blocks...`` names),
- a Caffe2 ``.pkl`` (``{"blobs": ...}`` built with the inverse of the Caffe2 regex map, with
  momentum / ``lr`` / ``model_iter`` solver blobs that the reader must ignore).
"""

import pickle

import numpy as np

from slowfast_tf.convert import checkpoints, name_maps, torch_reference


def make_reference(arch, inputs, seed=0):
    """Builds the PTV model for ``arch`` and randomises its BN state on ``inputs`` (Keras dict).

    Also perturbs the classifier bias so that a dropped or transposed bias shows up.
    """
    torch = torch_reference.import_torch()
    torch.manual_seed(seed)
    model = torch_reference.build_ptv_model(arch)
    torch_reference.randomize_batch_norm_(
        model, torch_reference.to_torch_inputs(inputs, arch), seed=seed
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("proj.bias"):
                param.normal_(0.0, 0.5)
    return model


def pyslowfast_state_from_ptv(ptv_state):
    """PTV state dict (tensors) -> PySlowFast-named numpy dict (``num_batches_tracked`` kept)."""
    arrays = {k: checkpoints._to_numpy(v) for k, v in ptv_state.items()}
    stages = name_maps.ptv_stage_numbers(arrays)
    renamed = {}
    for name, value in arrays.items():
        if name_maps.is_ignored_torch_name(name):
            module = name.rsplit(".", 1)[0]
            target = name_maps.ptv_to_pyslowfast(module + ".weight", stages)
            renamed[target.rsplit(".", 1)[0] + ".num_batches_tracked"] = value
            continue
        renamed[name_maps.ptv_to_pyslowfast(name, stages)] = value
    return renamed


def write_ptv_checkpoint(model, path):
    """Saves ``model`` as a PyTorchVideo hub checkpoint ``{"model_state": state_dict}``."""
    torch = torch_reference.import_torch()
    torch.save({"model_state": model.state_dict()}, path)
    return path


def write_pyslowfast_checkpoint(state, path, wrap_prefix=""):
    """Saves a PySlowFast-named state as PySlowFast's ``checkpoint_epoch_*.pyth`` layout.

    Args:
        state: dict of PySlowFast name -> numpy array.
        path: output file.
        wrap_prefix: str prepended to every name (``"model."`` mimics a PTV model inside
            PySlowFast; the names stay PySlowFast-style here to exercise the prefix strip).
    """
    torch = torch_reference.import_torch()
    model_state = {
        wrap_prefix + name: torch.from_numpy(np.ascontiguousarray(value))
        for name, value in state.items()
    }
    torch.save(
        {
            "epoch": 196,
            "model_state": model_state,
            "optimizer_state": {"state": {}, "param_groups": []},
            "cfg": "MODEL:\n  ARCH: slowfast\n",
        },
        path,
    )
    return path


def fast_blocks_per_stage(state):
    """``{stage: blocks}`` of the fast pathway, read from PySlowFast names."""
    blocks = {}
    for name in state:
        parts = name.split(".")
        if len(parts) > 1 and parts[1].startswith("pathway1_res"):
            stage = int(parts[0][1:])
            block = int(parts[1].removeprefix("pathway1_res"))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return blocks


def caffe2_blobs_from_pyslowfast(state):
    """PySlowFast-named state -> Caffe2 blob dict (with solver blobs the reader must skip)."""
    fast_blocks = fast_blocks_per_stage(state)
    blobs = {}
    for name, value in state.items():
        if name_maps.is_ignored_torch_name(name):
            continue
        blob = name_maps.pyslowfast_to_caffe2(name, fast_blocks)
        blobs[blob] = np.asarray(value, dtype=np.float32)
        if name.endswith(".weight"):
            blobs[blob + "_momentum"] = np.zeros_like(blobs[blob])
    blobs["lr"] = np.asarray([0.1], dtype=np.float32)
    blobs["model_iter"] = np.asarray([1000], dtype=np.int64)
    return blobs


def write_caffe2_checkpoint(state, path):
    """Saves a PySlowFast-named state as a Caffe2 ``.pkl`` (``{"blobs": ...}``, protocol 2)."""
    with open(path, "wb") as f:
        pickle.dump({"blobs": caffe2_blobs_from_pyslowfast(state)}, f, protocol=2)
    return path


def write_all_formats(ptv_model, directory):
    """Writes ``ptv_model`` in every supported layout.

    Returns:
        list of ``(label, source, path)``: the PTV hub file, a PySlowFast file (with
        ``num_batches_tracked`` buffers the loader must skip), a PySlowFast file wrapping the PTV
        model (``model.blocks...`` names, as PySlowFast saves PTV models) and a Caffe2 pickle.
    """
    torch = torch_reference.import_torch()
    state = pyslowfast_state_from_ptv(ptv_model.state_dict())
    wrapped = f"{directory}/pyslowfast_ptv_wrapped.pyth"
    torch.save(
        {"epoch": 1, "model_state": {"model." + k: v for k, v in ptv_model.state_dict().items()}},
        wrapped,
    )
    return [
        ("pytorchvideo", "pytorchvideo", write_ptv_checkpoint(ptv_model, f"{directory}/ptv.pyth")),
        (
            "pyslowfast",
            "pyslowfast",
            write_pyslowfast_checkpoint(state, f"{directory}/pyslowfast.pyth"),
        ),
        ("pyslowfast-wrapped-ptv", "pyslowfast", wrapped),
        ("caffe2", "caffe2", write_caffe2_checkpoint(state, f"{directory}/caffe2.pkl")),
    ]


# --------------------------------------------------------------------------------------------
# Detection (AVA)
# --------------------------------------------------------------------------------------------


def make_detector_reference(arch, inputs, aligned=False, seed=0):
    """PTV detector with random weights, randomised BN statistics (measured on ``inputs``) and
    a random projection bias."""
    torch = torch_reference.import_torch()
    torch.manual_seed(seed)
    model = torch_reference.build_ptv_detector(arch, aligned=aligned)
    torch_reference.randomize_batch_norm_(
        model.model, torch_reference.to_torch_inputs(inputs, arch), seed=seed
    )
    with torch.no_grad():
        model.detection_head.proj.weight.normal_(0.0, 0.05)
        model.detection_head.proj.bias.normal_(0.0, 0.5)
    return model


def write_detector_formats(ptv_detector, directory):
    """Writes a PTV detector as a PyTorchVideo hub ``.pyth`` (``model.blocks...`` +
    ``detection_head.proj``, the ``SLOWFAST_8x8_R50_DETECTION.pyth`` layout), a PySlowFast
    ``.pyth`` (``head.projection``), a PySlowFast-wrapped PTV ``.pyth`` (``model.`` prefix on
    every name) and a Caffe2 ``.pkl`` (``pred_w`` / ``pred_b``).

    Returns:
        list of ``(label, source, path)`` as :func:`write_all_formats`.
    """
    torch = torch_reference.import_torch()
    ptv_state = ptv_detector.state_dict()
    state = pyslowfast_state_from_ptv(ptv_state)
    wrapped = f"{directory}/pyslowfast_ptv_detector_wrapped.pyth"
    torch.save({"epoch": 1, "model_state": {"model." + k: v for k, v in ptv_state.items()}}, wrapped)
    return [
        (
            "pytorchvideo",
            "pytorchvideo",
            write_ptv_checkpoint(ptv_detector, f"{directory}/ptv_detector.pyth"),
        ),
        (
            "pyslowfast",
            "pyslowfast",
            write_pyslowfast_checkpoint(state, f"{directory}/pyslowfast_detector.pyth"),
        ),
        ("pyslowfast-wrapped-ptv", "pyslowfast", wrapped),
        ("caffe2", "caffe2", write_caffe2_checkpoint(state, f"{directory}/caffe2_detector.pkl")),
    ]
