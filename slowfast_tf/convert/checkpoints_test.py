"""Checkpoint readers: accepted layouts and one-line errors for corrupted or foreign files."""

import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pytest

from slowfast_tf.convert import CheckpointError, checkpoints

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs torch (the convert extra)"
)


def _one_line_error(call, *args):
    with pytest.raises(CheckpointError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _tiny_torch_state():
    import torch

    return {
        "s1.pathway0_stem.conv.weight": torch.ones(2, 3, 1, 7, 7),
        "s1.pathway0_stem.bn.weight": torch.ones(2),
        "s1.pathway0_stem.bn.num_batches_tracked": torch.tensor(7),
    }


@needs_torch
@pytest.mark.parametrize("key", ["model_state", "state_dict", None])
def test_reads_pyslowfast_layouts_and_strips_prefixes(tmp_path, key):
    import torch

    state = {"module." + k: v for k, v in _tiny_torch_state().items()}
    path = str(tmp_path / "ckpt.pyth")
    torch.save(state if key is None else {key: state, "epoch": 3, "cfg": "x: 1"}, path)
    loaded = checkpoints.read_torch_checkpoint(path)
    assert sorted(loaded) == sorted(_tiny_torch_state())
    assert isinstance(loaded["s1.pathway0_stem.conv.weight"], np.ndarray)
    renamed, unmapped, ignored = checkpoints.read_checkpoint(path, "pyslowfast")
    assert unmapped == [] and ignored == ["s1.pathway0_stem.bn.num_batches_tracked"]
    assert set(renamed) == {"s1.pathway0_stem.conv.weight", "s1.pathway0_stem.bn.weight"}


@needs_torch
def test_reads_pyslowfast_wrapped_ptv_names(tmp_path):
    import torch

    path = str(tmp_path / "wrapped.pyth")
    torch.save(
        {
            "model_state": {
                "model.blocks.0.multipathway_blocks.1.conv.weight": torch.zeros(8, 3, 5, 7, 7),
                "model.blocks.1.multipathway_blocks.0.res_blocks.0.branch1_norm.running_var": (
                    torch.ones(4)
                ),
                "model.blocks.6.proj.weight": torch.zeros(400, 2304),
            }
        },
        path,
    )
    state, unmapped, _ = checkpoints.read_checkpoint(path, "pyslowfast")
    assert unmapped == []
    assert set(state) == {
        "s1.pathway1_stem.conv.weight",
        "s2.pathway0_res0.branch1_bn.running_var",
        "head.projection.weight",
    }


@needs_torch
def test_truncated_pyth_is_a_one_line_error(tmp_path):
    import torch

    path = tmp_path / "truncated.pyth"
    torch.save({"model_state": _tiny_torch_state()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _one_line_error(checkpoints.read_torch_checkpoint, str(path))
    assert str(path) in message and "not a readable PyTorch checkpoint" in message


@needs_torch
def test_not_a_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.pyth"
    path.write_text("this is not a checkpoint\n")
    message = _one_line_error(checkpoints.read_torch_checkpoint, str(path))
    assert str(path) in message and "torch.save" in message


@needs_torch
def test_unsafe_pickle_is_refused(tmp_path):
    # weights_only=True refuses arbitrary classes: a downloaded file cannot run code.
    path = tmp_path / "evil.pyth"
    with open(path, "wb") as f:
        pickle.dump({"model_state": {"x": np.ones(2)}}, f)  # numpy arrays are not allowed
    message = _one_line_error(checkpoints.read_torch_checkpoint, str(path))
    assert "not a readable PyTorch checkpoint" in message


@needs_torch
def test_dict_without_weights_names_its_keys(tmp_path):
    import torch

    path = str(tmp_path / "other.pyth")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}, "notes": "hello"}, path)
    message = _one_line_error(checkpoints.read_torch_checkpoint, path)
    assert "'model_state'" in message and "epoch" in message


@needs_torch
def test_zip_checkpoint_passed_as_caffe2_says_which_flag(tmp_path):
    import torch

    path = str(tmp_path / "ptv.pyth")
    torch.save({"model_state": _tiny_torch_state()}, path)
    message = _one_line_error(checkpoints.read_checkpoint, path, "caffe2")
    assert "--source pyslowfast" in message


def test_caffe2_reader_and_rename(tmp_path):
    path = str(tmp_path / "c2.pkl")
    blobs = {
        "conv1_w": np.ones((64, 3, 1, 7, 7), np.float32),
        "res_conv1_bn_riv": np.ones(64, np.float32),
        "conv1_w_momentum": np.zeros((64, 3, 1, 7, 7), np.float32),
        "lr": np.asarray([0.1], np.float32),
        "model_iter": np.asarray([5], np.int64),
        "pred_w": np.zeros((400, 2304), np.float32),
    }
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    state, unmapped, ignored = checkpoints.read_checkpoint(path, "caffe2")
    assert unmapped == []
    assert ignored == ["conv1_w_momentum", "lr", "model_iter"]
    assert set(state) == {
        "s1.pathway0_stem.conv.weight",
        "s1.pathway0_stem.bn.running_var",
        "head.projection.weight",
    }


@pytest.mark.parametrize(
    "payload,expected",
    [
        (b"\x80\x02}q\x00(X\x05\x00\x00\x00blobsq", "not a readable Caffe2 checkpoint"),
        (pickle.dumps([1, 2, 3], protocol=2), "expected a Caffe2 pickle with a 'blobs' dict"),
        (pickle.dumps({"weights": {}}, protocol=2), "expected a Caffe2 pickle with a 'blobs' dict"),
        (b"plain text, not a pickle", "not a readable Caffe2 checkpoint"),
    ],
)
def test_bad_caffe2_files_are_one_line_errors(tmp_path, payload, expected):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    message = _one_line_error(checkpoints.read_caffe2_checkpoint, str(path))
    assert str(path) in message and expected in message


def test_missing_file_and_bad_source(tmp_path):
    message = _one_line_error(checkpoints.read_caffe2_checkpoint, str(tmp_path / "nope.pkl"))
    assert "not found" in message
    with pytest.raises(ValueError, match="Received: source='mmaction'"):
        checkpoints.read_checkpoint(str(tmp_path / "x.pkl"), "mmaction")


def test_caffe2_path_works_without_torch(tmp_path):
    # torch is an optional extra: with it unimportable, Caffe2 files still read and the .pyth
    # path says how to install it.
    path = tmp_path / "c2.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.ones((2, 3, 1, 7, 7), np.float32)}}, f, protocol=2)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from slowfast_tf.convert import checkpoints\n"
        f"state, _, _ = checkpoints.read_checkpoint({str(path)!r}, 'caffe2')\n"
        "assert list(state) == ['s1.pathway0_stem.conv.weight'], state\n"
        "try:\n"
        f"    checkpoints.read_checkpoint({str(path)!r}, 'pytorchvideo')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "slowfast_tf[convert]" in result.stdout
