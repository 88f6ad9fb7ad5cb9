"""A downloaded checkpoint cannot run code: malicious Caffe2 pickles and ``.pyth`` files are
refused before anything they name is called, and real weight layouts still load."""

import builtins
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
import types

import numpy as np
import pytest

from slowfast_tf.convert import CheckpointError, checkpoints

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs torch (the convert extra)"
)


class _Reduce:
    """Pickles as ``func(*args)``: what an attacker's ``__reduce__`` returns."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch_command(marker):
    return f"{sys.executable} -c \"open({str(marker)!r}, 'w').close()\""


def _malicious_payloads(marker):
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Reduce(os.system, _touch_command(marker)),
        "builtins.eval": _Reduce(builtins.eval, code),
        "builtins.exec": _Reduce(builtins.exec, code),
        "subprocess.Popen": _Reduce(
            subprocess.Popen, [sys.executable, "-c", code]
        ),
        # Allowed module (numpy), not an allowed name: np.save writes the marker file.
        "numpy.save": _Reduce(np.save, str(marker), np.zeros(1)),
    }


def _py2_array(array):
    """Pickle opcodes numpy writes for an array under Python 2 (protocol 2, str data)."""
    array = np.ascontiguousarray(array)
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t"
    raw = (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<I", len(data)))
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        b"(K\x01" + shape
        + b"cnumpy\ndtype\nU\x02" + array.dtype.str[1:].encode() + b"K\x00K\x01\x87R"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89" + raw + data + b"tb"
    )


def _py2_blobs_pickle(blobs):
    """``{"blobs": {name: array}}`` as Python 2's cPickle (protocol 2) wrote the MODEL_ZOO."""
    items = b"".join(
        b"U" + bytes([len(name)]) + name.encode() + _py2_array(value)
        for name, value in blobs.items()
    )
    return b"\x80\x02}U\x05blobs}(" + items + b"us."


BLOBS = {
    "conv1_w": np.arange(2 * 3 * 1 * 7 * 7, dtype=np.float32).reshape(2, 3, 1, 7, 7),
    "res_conv1_bn_riv": np.linspace(0.5, 2, 2).astype(np.float32),
    "pred_w": np.ones((5, 4), np.float64),
    "model_iter": np.asarray([7], np.int64),
}


@pytest.mark.parametrize("form", ["py2_protocol2", "protocol2", "protocol4", "protocol5"])
def test_real_caffe2_layouts_load(tmp_path, form):
    path = tmp_path / "zoo.pkl"
    if form == "py2_protocol2":
        path.write_bytes(_py2_blobs_pickle(BLOBS))
    else:
        extra = {"model_iter_scalar": np.float32(3.5), "note": b"bytes", "lr": 0.1, "it": [1, (2,)]}
        protocol = int(form[-1])
        path.write_bytes(pickle.dumps({"blobs": BLOBS, **extra}, protocol=protocol))
    blobs = checkpoints.read_caffe2_checkpoint(str(path))
    assert sorted(blobs) == sorted(BLOBS)
    for name, value in BLOBS.items():
        assert blobs[name].dtype == value.dtype, name
        np.testing.assert_array_equal(blobs[name], value, err_msg=name)


@pytest.mark.parametrize("name", sorted(_malicious_payloads("x")))
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_caffe2_pickles_are_refused_without_running(tmp_path, name, protocol):
    marker = tmp_path / "pwned.npy"
    payload = _malicious_payloads(marker)[name]
    path = tmp_path / "evil.pkl"
    # Nested where the weights go, as a real attack would hide it.
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": payload}}, protocol=protocol))
    with pytest.raises(CheckpointError) as info:
        checkpoints.read_checkpoint(str(path), "caffe2")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "refused to load" in message and name.split(".")[-1] in message
    assert not marker.exists()


def test_inst_opcode_persistent_ids_and_other_codecs_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    # Protocol 0 INST: instantiate os.system with an argument, no __reduce__ involved.
    inst = b"(S'" + _touch_command(marker).replace("'", "\\'").encode() + b"'\nios\nsystem\n."
    (tmp_path / "inst.pkl").write_bytes(inst)
    with pytest.raises(CheckpointError, match="refused to load.*os.system"):
        checkpoints.read_caffe2_checkpoint(str(tmp_path / "inst.pkl"))
    # A persistent id (torch's tensor storages use them) is refused too.
    (tmp_path / "pid.pkl").write_bytes(b"\x80\x02X\x01\x00\x00\x00xQ.")
    with pytest.raises(CheckpointError, match="refused to load.*persistent id"):
        checkpoints.read_caffe2_checkpoint(str(tmp_path / "pid.pkl"))
    # _codecs.encode is allowed for latin1 bytes only.
    codec = pickle.dumps(_Reduce(__import__("_codecs").encode, "x", "rot13"), protocol=2)
    (tmp_path / "codec.pkl").write_bytes(codec)
    with pytest.raises(CheckpointError, match="refused to load.*rot13"):
        checkpoints.read_caffe2_checkpoint(str(tmp_path / "codec.pkl"))
    assert not marker.exists()


@needs_torch
@pytest.mark.parametrize("layout", ["torch_save_zip", "legacy_pickle"])
def test_malicious_pyth_is_refused_without_running(tmp_path, layout):
    import torch

    marker = tmp_path / "pwned"
    payload = {"model_state": {"conv.weight": _Reduce(os.system, _touch_command(marker))}}
    path = tmp_path / "evil.pyth"
    if layout == "torch_save_zip":
        torch.save(payload, str(path))
    else:
        torch.save(payload, str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as info:
        checkpoints.read_checkpoint(str(path), "pyslowfast")
    assert "\n" not in str(info.value) and "not a readable PyTorch checkpoint" in str(info.value)
    assert not marker.exists()
    # The same file given as Caffe2: refused by the restricted unpickler or as a zip archive.
    with pytest.raises(CheckpointError):
        checkpoints.read_checkpoint(str(path), "caffe2")
    assert not marker.exists()


def test_torch_without_safe_weights_only_is_refused(monkeypatch):
    # torch <= 2.5.1's weights_only loader can be bypassed (CVE-2025-32434): refuse to use it.
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="2.5.1+cu121"))
    with pytest.raises(ImportError, match="CVE-2025-32434"):
        checkpoints.import_torch()
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="2.13.0"))
    assert checkpoints.import_torch().__version__ == "2.13.0"
