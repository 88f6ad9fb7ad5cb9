"""Readers for PySlowFast / PyTorchVideo ``.pyth`` files and Caffe2 ``.pkl`` blobs.

Every reader returns a PySlowFast-named state dict ``{name: np.ndarray}`` in torch layouts
(convs OIDHW, linear ``[out, in]``), so the Keras loader only knows one naming scheme.
torch is imported lazily: the Caffe2 path and the name maps work without it.
"""

import codecs
import os
import pickle
import zipfile

import numpy as np

from slowfast_tf.convert import name_maps

SOURCES = ("pyslowfast", "pytorchvideo", "caffe2")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not hold SlowFast weights."""


class ConversionError(ValueError):
    """Checkpoint tensors and Keras weights do not correspond one to one."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle references a callable or class outside the allow-list of weight files."""


# Oldest torch whose ``torch.load(weights_only=True)`` has no known code-execution bypass
# (CVE-2025-32434 affects <= 2.5.1).
MIN_SAFE_TORCH = (2, 6)


def import_torch():
    """Imports torch or raises an ImportError that says how to get it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Converting PySlowFast / PyTorchVideo checkpoints needs PyTorch. Install it with "
            "`pip install 'slowfast_tf[convert]'` (or `pip install torch`). Caffe2 .pkl "
            "checkpoints (--source caffe2) convert without torch."
        ) from e
    if _version_tuple(torch.__version__) < MIN_SAFE_TORCH:
        raise ImportError(
            f"torch {torch.__version__} is too old to load downloaded checkpoints safely: its "
            "torch.load(weights_only=True) can be made to run code (CVE-2025-32434). Install "
            "torch>=2.6 (`pip install 'slowfast_tf[convert]'`)."
        )
    return torch


def _version_tuple(version):
    """``"2.13.0+cpu"`` -> ``(2, 13)``."""
    parts = []
    for part in str(version).split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _numpy_internals():
    """numpy's array-pickling helpers (``numpy._core`` in numpy 2, ``numpy.core`` before)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    return multiarray, numeric


_LATIN1_NAMES = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, latin1 only."""
    if str(encoding).lower().replace("_", "-") not in _LATIN1_NAMES or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1", errors)


def _pickle_allow_list():
    """``(module, name) -> object`` a Caffe2 weight pickle may reference, and nothing else.

    Covers numpy arrays and scalars as numpy 1.x / 2.x and Python 2 / 3 write them (protocols
    0-5), and ``_codecs.encode`` (how Python 3 protocol 2 stores bytes). ``_reconstruct`` builds
    only ``ndarray`` subclasses, and the only class reachable is ``ndarray`` itself.
    """
    multiarray, numeric = _numpy_internals()
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _WeightsUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals; anything else is refused.

    Every way a pickle can call code (``GLOBAL`` / ``STACK_GLOBAL`` / ``INST`` / ``OBJ`` /
    extension codes, then ``REDUCE`` / ``NEWOBJ`` / ``BUILD``) needs ``find_class`` to hand it a
    callable first, and persistent ids are refused, so a file can only build containers,
    strings, numbers and numpy arrays.
    """

    _ALLOWED = None

    def find_class(self, module, name):
        if _WeightsUnpickler._ALLOWED is None:
            _WeightsUnpickler._ALLOWED = _pickle_allow_list()
        try:
            return _WeightsUnpickler._ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"persistent id {str(pid)[:40]!r}")


def safe_pickle_load(f):
    """``pickle.load(f, encoding="latin1")`` restricted to dicts, lists, tuples, strings, bytes,
    numbers and numpy arrays / dtypes / scalars.

    Raises:
        UnsafePickleError: the pickle references anything else (e.g. ``os.system``); nothing
            it names is called.
    """
    return _WeightsUnpickler(f, encoding="latin1").load()


def _first_line(error):
    """``Type: first sentence`` of an exception, so errors stay one readable line."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    sentence_end = text.find(". ")
    if sentence_end > 0:
        text = text[: sentence_end + 1]
    return f"{type(error).__name__}: {text[:200]}"


def _check_file(path):
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file not found. Received: path={path!r}")


def _to_numpy(value):
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here.
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def _strip_common_prefix(state, prefixes=("module.", "model.")):
    """Drops a DDP ``module.`` or PySlowFast-wrapper ``model.`` prefix shared by the weights."""
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            names = [n for n in state if not name_maps.is_ignored_torch_name(n)]
            if names and all(n.startswith(prefix) for n in names):
                state = {n.removeprefix(prefix): v for n, v in state.items()}
                changed = True
    return state


def _extract_state_dict(obj, path):
    """Finds the model state inside a loaded ``.pyth`` object."""
    if isinstance(obj, dict):
        for key in ("model_state", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if obj and all(hasattr(v, "shape") for v in obj.values()):
            return obj  # A raw state dict.
        keys = sorted(str(k) for k in obj)[:8]
        raise CheckpointError(
            f"{path}: expected a state dict or a dict with 'model_state' (PySlowFast / "
            f"PyTorchVideo .pyth), found a dict with keys {keys}"
        )
    raise CheckpointError(
        f"{path}: expected a state dict or a dict with 'model_state', found {type(obj).__name__}"
    )


def read_torch_checkpoint(path):
    """Reads a PySlowFast or PyTorchVideo ``.pyth`` (or a raw ``torch.save``'d state dict).

    Args:
        path: str, the checkpoint file.

    Returns:
        dict ``{name: np.ndarray}`` with the file's own parameter names (DDP ``module.`` and
        PySlowFast-wrapper ``model.`` prefixes removed), ``num_batches_tracked`` included.

    Raises:
        CheckpointError: one line naming the file and what was expected.
    """
    torch = import_torch()
    _check_file(path)
    try:
        # weights_only: never run arbitrary pickled code from a downloaded file.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        detail = _first_line(e)
        if type(e).__name__ == "UnpicklingError":
            detail += " (the file pickles Python objects other than tensors, which weights_only loading refuses)"
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (expected a torch.save .pyth file "
            f"holding a state dict or {{'model_state': ...}}); {detail}"
        ) from None
    state = _extract_state_dict(obj, path)
    bad = [k for k, v in state.items() if not hasattr(v, "shape")]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {bad[:5]}")
    return _strip_common_prefix({str(k): _to_numpy(v) for k, v in state.items()})


def read_caffe2_checkpoint(path):
    """Reads a PySlowFast Caffe2 ``.pkl``: ``["blobs"]`` of the latin1-decoded pickle.

    The pickle is read by :func:`safe_pickle_load`, which builds only containers, strings,
    numbers and numpy arrays: a crafted file cannot run code, it is refused.

    Args:
        path: str, the checkpoint file.

    Returns:
        dict ``{blob_name: np.ndarray}``.

    Raises:
        CheckpointError: one line naming the file and what was expected.
    """
    _check_file(path)
    try:
        with open(path, "rb") as f:
            # latin1: the zoo pickles were written by Python 2 (numpy arrays as byte strings).
            obj = safe_pickle_load(f)
    except UnsafePickleError as e:
        raise CheckpointError(
            f"{path}: refused to load: the pickle references {e}, which is not part of a "
            "weight file (only dicts, lists, strings, numbers and numpy arrays are allowed); "
            "the file may be malicious and nothing in it was run"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path}: not a readable Caffe2 checkpoint (expected a pickle holding "
            f"{{'blobs': {{name: array}}}}); {_first_line(e)}"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("blobs"), dict):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: expected a Caffe2 pickle with a 'blobs' dict, found {found}"
        )
    blobs = {}
    for name, value in obj["blobs"].items():
        array = np.asarray(value)
        if array.dtype == object:
            raise CheckpointError(f"{path}: blob {name!r} is not a numeric array")
        blobs[str(name)] = array
    return blobs


def torch_names_to_pyslowfast(state, source="pytorchvideo"):
    """Renames a torch state dict to PySlowFast names.

    PySlowFast itself wraps PyTorchVideo models (``model.blocks...``), so the naming scheme is
    detected from the names, not trusted from ``source``.

    Returns:
        ``(renamed, unmapped, ignored)``: the PySlowFast-named dict, the source names no rule
        matched, and the names dropped on purpose (``num_batches_tracked``).
    """
    del source  # The names decide; kept for a readable call site.
    ignored = sorted(n for n in state if name_maps.is_ignored_torch_name(n))
    names = [n for n in state if not name_maps.is_ignored_torch_name(n)]
    if not name_maps.looks_like_ptv(names):
        return {n: state[n] for n in names}, [], ignored
    stages = name_maps.ptv_stage_numbers(names)
    renamed, unmapped = {}, []
    for name in names:
        target = name_maps.ptv_to_pyslowfast(name, stages)
        if target is None:
            unmapped.append(name)
        else:
            renamed[target] = state[name]
    return renamed, unmapped, ignored


def caffe2_blobs_to_pyslowfast(blobs):
    """Renames Caffe2 blobs to PySlowFast names (conv blobs are already OIDHW).

    Returns:
        ``(renamed, unmapped, ignored)`` as :func:`torch_names_to_pyslowfast`.
    """
    renamed, unmapped, ignored = {}, [], []
    for name, array in blobs.items():
        if name_maps.is_ignored_caffe2_name(name):
            ignored.append(name)
            continue
        target = name_maps.caffe2_to_pyslowfast(name)
        if target is None:
            unmapped.append(name)
            continue
        if target.endswith(".weight") and array.ndim in (2, 3, 4) and "projection" not in target:
            # Caffe2 sometimes stores 3D conv weights with trailing singleton dims dropped.
            array = array.reshape(array.shape + (1,) * (5 - array.ndim))
        renamed[target] = array
    return renamed, sorted(unmapped), sorted(ignored)


def read_checkpoint(path, source):
    """Reads any supported checkpoint into a PySlowFast-named state dict.

    Args:
        path: str, the checkpoint file.
        source: str, one of ``"pyslowfast"``, ``"pytorchvideo"`` or ``"caffe2"``.

    Returns:
        ``(state, unmapped, ignored)``: PySlowFast-named numpy arrays in torch layouts, the
        source names no rule matched, and the names dropped on purpose.
    """
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    if source == "caffe2":
        if zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path}: this is a torch.save zip archive, not a Caffe2 pickle; use "
                "--source pyslowfast or --source pytorchvideo"
            )
        return caffe2_blobs_to_pyslowfast(read_caffe2_checkpoint(path))
    return torch_names_to_pyslowfast(read_torch_checkpoint(path), source)
