"""Assigns a PySlowFast-named state dict to a Keras SlowFast model, strictly.

Keras layers are named after PySlowFast modules with ``.`` -> ``_``, and a variable's
``path`` is ``<layer>/<variable>`` (nested custom layers add ``<outer>/<inner>/``; functional
sub-models add nothing), so the map from a checkpoint tensor to a Keras variable is a string
rewrite. Every checkpoint tensor must land on exactly one Keras variable and every Keras
variable must be written, otherwise :class:`ConversionError` lists what went wrong; there is no
silent partial load.
"""

import dataclasses
import re

import numpy as np
import tqdm

from slowfast_tf.convert import checkpoints, name_maps
from slowfast_tf.convert.checkpoints import ConversionError

HEAD_LAYER = "head_projection"
_BN_TORCH_TO_KERAS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_PLAIN_TORCH_TO_KERAS = {"weight": "kernel", "bias": "bias"}
_MAX_LISTED = 25


@dataclasses.dataclass
class ConversionReport:
    """What a conversion did.

    Attributes:
        source: str, checkpoint format (``pyslowfast`` / ``pytorchvideo`` / ``caffe2``).
        num_tensors: int, checkpoint tensors written into the model.
        num_values: int, scalar values written (parameters plus BN statistics).
        ignored: list of source names dropped on purpose (``num_batches_tracked``, solver blobs).
        checkpoint_num_classes: int or None, class count read from the head tensor shape.
        model_num_classes: int or None, the Keras head's class count.
        head_dropped: bool, True when the head was left at its initialisation (fine-tuning).
        messages: list of human-readable notes.
    """

    source: str
    num_tensors: int = 0
    num_values: int = 0
    ignored: list = dataclasses.field(default_factory=list)
    checkpoint_num_classes: int | None = None
    model_num_classes: int | None = None
    head_dropped: bool = False
    messages: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [
            f"Converted {self.num_tensors} tensors ({self.num_values:,} values) from "
            f"{self.source}; ignored {len(self.ignored)} non-weight entries."
        ]
        return "\n".join(lines + self.messages)


def _variable_table(model):
    """``{keras_module_name: {variable_name: variable}}`` over all of the model's weights."""
    table = {}
    for variable in model.weights:
        module, _, var_name = variable.path.rpartition("/")
        table.setdefault(module.replace("/", "_"), {})[var_name] = variable
    return table


def _keras_var_name(torch_param, keras_vars):
    is_bn = "moving_mean" in keras_vars
    return (_BN_TORCH_TO_KERAS if is_bn else _PLAIN_TORCH_TO_KERAS).get(torch_param)


def torch_to_keras_layout(array, keras_shape):
    """Converts a torch-layout array to the Keras variable layout.

    Conv3d ``[O, I, kt, kh, kw]`` -> ``[kt, kh, kw, I, O]``; Linear ``[O, I]`` -> ``[I, O]``
    (or ``[1, 1, 1, I, O]`` for a 1x1x1 conv head); 1-D tensors unchanged.
    """
    keras_shape = tuple(keras_shape)
    if array.ndim < len(keras_shape) == 5 and array.ndim > 2:
        # Caffe2 blobs may drop trailing singleton kernel dims.
        array = array.reshape(array.shape + (1,) * (5 - array.ndim))
    if array.ndim == 5:
        array = np.transpose(array, (2, 3, 4, 1, 0))
    elif array.ndim == 2:
        array = array.T
        if len(keras_shape) == 5:
            array = array.reshape((1, 1, 1) + array.shape)
    return array


def _head_units(table):
    head = table.get(HEAD_LAYER, {})
    kernel = head.get("kernel")
    return None if kernel is None else int(kernel.shape[-1])


def _format_error(unmapped, unassigned, mismatches, hint):
    parts = ["Checkpoint and Keras model do not match; nothing was loaded."]

    def listing(title, items):
        if items:
            shown = "\n    ".join(items[:_MAX_LISTED])
            more = (
                f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            )
            parts.append(f"  {title} ({len(items)}):\n    {shown}{more}")

    listing("checkpoint tensors with no Keras weight", unmapped)
    listing("Keras weights left unassigned", unassigned)
    listing("shape mismatches (checkpoint, in Keras layout -> Keras)", mismatches)
    if hint:
        parts.append(hint)
    return "\n".join(parts)


def load_pyslowfast_state_into(
    model,
    state,
    *,
    source="pyslowfast",
    unmapped=(),
    ignored=(),
    allow_head_mismatch=False,
    allow_non_finite=False,
    progress=False,
):
    """Writes a PySlowFast-named torch-layout state dict into ``model``.

    All shapes are checked before anything is assigned, so a failed call leaves the model as
    it was.

    Args:
        model: a Keras SlowFast classifier or backbone (layers named after PySlowFast modules).
        state: dict ``{pyslowfast_name: np.ndarray}`` in torch layouts.
        source: str, recorded in the report.
        unmapped: source names a reader could not rename (reported as errors).
        ignored: source names dropped on purpose (recorded in the report).
        allow_head_mismatch: bool. When the checkpoint's class count differs from the
            model's, leave ``head_projection`` at its initialisation (fine-tuning) instead of
            failing.
        allow_non_finite: bool. A tensor holding NaN or Inf fails the conversion unless this is
            True; then it is loaded and the report starts with a WARNING line naming it.
        progress: bool, show a tqdm bar while assigning.

    Returns:
        ConversionReport.

    Raises:
        ConversionError: listing unmapped checkpoint tensors, unassigned Keras weights and
            shape mismatches, or (one line) naming the tensors with non-finite values.
    """
    table = _variable_table(model)
    report = ConversionReport(source=source, ignored=list(ignored))
    unmapped = list(unmapped)
    head = state.get(name_maps.HEAD_WEIGHT)
    report.checkpoint_num_classes = None if head is None else int(head.shape[0])
    report.model_num_classes = _head_units(table)
    skip_head = False
    if head is not None and HEAD_LAYER not in table:
        skip_head = True
        report.messages.append(
            f"The model has no '{HEAD_LAYER}'; the checkpoint's "
            f"{report.checkpoint_num_classes}-class head was not loaded."
        )
    elif head is None and allow_head_mismatch and HEAD_LAYER in table:
        skip_head = True
        report.head_dropped = True
        report.messages.append(
            f"The checkpoint has no head: '{HEAD_LAYER}' left at its initialisation (fine-tuning)."
        )
    elif (
        head is not None
        and report.model_num_classes != report.checkpoint_num_classes
        and allow_head_mismatch
    ):
        skip_head = True
        report.head_dropped = True
        report.messages.append(
            f"Checkpoint head has {report.checkpoint_num_classes} classes, model has "
            f"{report.model_num_classes}: '{HEAD_LAYER}' left at its initialisation "
            "(fine-tuning)."
        )

    plan, mismatches, assigned, planned = [], [], set(), {}
    for name in sorted(state):
        module, param = name_maps.pyslowfast_to_keras(name)
        if skip_head and module == HEAD_LAYER:
            continue
        keras_vars = table.get(module)
        var_name = None if keras_vars is None else _keras_var_name(param, keras_vars)
        if var_name is None or var_name not in keras_vars:
            unmapped.append(f"{name} -> {module}/{var_name or param} (no such Keras weight)")
            continue
        variable = keras_vars[var_name]
        array = torch_to_keras_layout(np.asarray(state[name]), variable.shape)
        if tuple(array.shape) != tuple(variable.shape):
            mismatches.append(
                f"{name} {tuple(state[name].shape)} -> {variable.path}: "
                f"{tuple(array.shape)} vs {tuple(variable.shape)}"
            )
            continue
        plan.append((variable, array))
        planned[name] = array
        assigned.add(variable.path)

    unassigned = [
        v.path
        for module, keras_vars in sorted(table.items())
        for v in keras_vars.values()
        if v.path not in assigned and not (skip_head and module == HEAD_LAYER)
    ]
    if unmapped or unassigned or mismatches:
        hint = None
        head_mismatch = any(HEAD_LAYER in m for m in mismatches)
        if head_mismatch:
            hint = (
                f"The head differs ({report.checkpoint_num_classes} checkpoint classes vs "
                f"{report.model_num_classes}); to fine-tune on another label set pass "
                "--num_classes N (allow_head_mismatch=True)."
            )
        elif head is None and any(u.startswith(HEAD_LAYER + "/") for u in unassigned):
            hint = (
                "The checkpoint has no classifier head; to train a new one pass "
                "--num_classes N (allow_head_mismatch=True)."
            )
        raise ConversionError(_format_error(sorted(unmapped), unassigned, mismatches, hint))
    warning = check_finite(planned, allow_non_finite)
    if warning:
        report.messages.insert(0, warning)

    for variable, array in tqdm.tqdm(
        plan, desc="Assigning weights", unit="tensor", disable=not progress, leave=False
    ):
        variable.assign(array.astype(variable.dtype))
        report.num_tensors += 1
        report.num_values += int(array.size)
    return report


def non_finite_tensors(arrays):
    """``[(name, non-finite count, size)]`` for the floating-point arrays holding NaN or Inf."""
    found = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.inexact):
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                found.append((name, bad, int(array.size)))
    return found


def check_finite(arrays, allow_non_finite=False):
    """Refuses NaN/Inf weights: raises a one-line ConversionError naming them.

    With ``allow_non_finite`` returns the WARNING line instead (None when all are finite).
    """
    non_finite = non_finite_tensors(arrays)
    if not non_finite:
        return None
    listed = ", ".join(f"{n} ({c} of {s})" for n, c, s in non_finite[:5])
    more = f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else ""
    summary = f"{len(non_finite)} tensor(s) hold NaN/Inf values: {listed}{more}"
    if not allow_non_finite:
        raise ConversionError(
            f"Checkpoint refused, nothing was loaded: {summary}. A model with these weights "
            "predicts NaN; pass --allow_non_finite (allow_non_finite=True) to convert it anyway."
        )
    return f"WARNING: loaded a broken checkpoint: {summary}."


def load_torch_state_dict_into(
    model, state_dict, source="pytorchvideo", allow_head_mismatch=False, allow_non_finite=False
):
    """Loads an in-memory torch (or numpy) state dict into a Keras model.

    Args:
        model: the Keras model.
        state_dict: dict of name -> tensor / array, with PySlowFast or PyTorchVideo names
            (``"caffe2"``: Caffe2 blob names). ``module.`` / ``model.`` prefixes are removed.
        source: str, ``"pyslowfast"``, ``"pytorchvideo"`` or ``"caffe2"``.
        allow_head_mismatch: bool, see :func:`load_pyslowfast_state_into`.
        allow_non_finite: bool, see :func:`load_pyslowfast_state_into`.

    Returns:
        ConversionReport.
    """
    if source not in checkpoints.SOURCES:
        raise ValueError(
            f"`source` must be one of {checkpoints.SOURCES}. Received: source={source!r}"
        )
    arrays = {str(k): checkpoints._to_numpy(v) for k, v in state_dict.items()}
    if source == "caffe2":
        state, unmapped, ignored = checkpoints.caffe2_blobs_to_pyslowfast(arrays)
    else:
        state, unmapped, ignored = checkpoints.torch_names_to_pyslowfast(
            checkpoints._strip_common_prefix(arrays), source
        )
    return load_pyslowfast_state_into(
        model,
        state,
        source=source,
        unmapped=unmapped,
        ignored=ignored,
        allow_head_mismatch=allow_head_mismatch,
        allow_non_finite=allow_non_finite,
    )


def convert_checkpoint(path, source, model, allow_head_mismatch=False, allow_non_finite=False):
    """Reads a checkpoint file and loads it into ``model``.

    Args:
        path: str, a ``.pyth`` (PySlowFast / PyTorchVideo) or ``.pkl`` (Caffe2) file.
        source: str, ``"pyslowfast"``, ``"pytorchvideo"`` or ``"caffe2"``.
        model: the Keras model, built with the checkpoint's architecture.
        allow_head_mismatch: bool, leave the head at init when class counts differ.
        allow_non_finite: bool, load NaN/Inf weights (with a WARNING in the report) instead
            of failing.

    Returns:
        ConversionReport.

    Raises:
        CheckpointError: unreadable file. ConversionError: tensors do not match the model or
            hold NaN/Inf.
    """
    state, unmapped, ignored = checkpoints.read_checkpoint(path, source)
    return load_pyslowfast_state_into(
        model,
        state,
        source=source,
        unmapped=unmapped,
        ignored=ignored,
        allow_head_mismatch=allow_head_mismatch,
        allow_non_finite=allow_non_finite,
    )


def checkpoint_num_classes(path, source):
    """The class count of a checkpoint's head (None if it has no head)."""
    state, _, _ = checkpoints.read_checkpoint(path, source)
    head = state.get(name_maps.HEAD_WEIGHT)
    return None if head is None else int(head.shape[0])


def keras_to_pyslowfast_state(model):
    """Exports a Keras model's weights as a PySlowFast-named state dict in torch layouts.

    The inverse of :func:`load_pyslowfast_state_into` (BN statistics included, no
    ``num_batches_tracked``); handy for writing models back to PyTorch and for tests.

    Returns:
        dict ``{pyslowfast_name: np.ndarray}``.
    """
    state = {}
    for module, keras_vars in _variable_table(model).items():
        is_bn = "moving_mean" in keras_vars
        for var_name, variable in keras_vars.items():
            array = np.asarray(variable.numpy(), dtype=np.float32)
            if array.ndim == 5:
                array = np.transpose(array, (4, 3, 0, 1, 2))
            elif array.ndim == 2:
                array = array.T
            mapping = _BN_TORCH_TO_KERAS if is_bn else _PLAIN_TORCH_TO_KERAS
            torch_param = {v: k for k, v in mapping.items()}[var_name]
            state[_keras_module_to_pyslowfast(module) + "." + torch_param] = np.ascontiguousarray(
                array
            )
    return state


_MODULE_PATTERNS = [
    # (keras module regex, PySlowFast module template); tried in order.
    (r"s1_pathway(\d+)_stem_(conv|bn)", "s1.pathway{0}_stem.{1}"),
    (r"s(\d+)_fuse_(conv_f2s|bn)", "s{0}_fuse.{1}"),
    (r"s(\d+)_pathway(\d+)_res(\d+)_branch2_([abc](?:_bn)?)", "s{0}.pathway{1}_res{2}.branch2.{3}"),
    (r"s(\d+)_pathway(\d+)_res(\d+)_(branch1(?:_bn)?)", "s{0}.pathway{1}_res{2}.{3}"),
    (
        r"s(\d+)_pathway(\d+)_nonlocal(\d+)_(conv_theta|conv_phi|conv_g|conv_out|bn)",
        "s{0}.pathway{1}_nonlocal{2}.{3}",
    ),
    (r"head_projection", "head.projection"),
]


def _keras_module_to_pyslowfast(module):
    for pattern, template in _MODULE_PATTERNS:
        match = re.fullmatch(pattern, module)
        if match:
            return template.format(*match.groups())
    raise ValueError(f"No PySlowFast module for Keras layer. Received: module={module!r}")
