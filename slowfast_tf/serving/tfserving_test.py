"""TF Serving side files: versions, models.config, batching parameters, warm-up records."""

import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from slowfast_tf.serving import tfserving


def test_versions_auto_increment(tmp_path):
    base = str(tmp_path / "slowfast")
    assert tfserving.next_version(base) == 1
    for d in ("1", "3", ".tmp-4", "notes"):
        os.makedirs(os.path.join(base, d))
    # Only numeric dirs count, as for the server's file-system source.
    assert tfserving.existing_versions(base) == [1, 3]
    assert tfserving.resolve_version_dir(base, None) == (4, os.path.join(base, "4"))
    assert tfserving.resolve_version_dir(base, 7) == (7, os.path.join(base, "7"))
    with pytest.raises(ValueError, match="already exists"):
        tfserving.resolve_version_dir(base, 3)
    with pytest.raises(ValueError, match="positive int"):
        tfserving.resolve_version_dir(base, -2)
    assert not tfserving.staging_dir(base, 4).rstrip("/").split("/")[-1].isdigit()


def test_models_config_round_trip_and_merge(tmp_path):
    path = str(tmp_path / "models.config")
    tfserving.write_models_config(path, {"slowfast": "/models/slowfast"})
    tfserving.write_models_config(path, {"slow_r50": "/models/slow_r50"})
    tfserving.write_models_config(path, {"slowfast": "/models/slowfast_v2"})
    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["slow_r50", "slowfast"]
    assert entries["slowfast"].base_path == "/models/slowfast_v2"
    assert entries["slowfast"].model_platform == "tensorflow"
    assert entries["slowfast"].model_version_policy.latest.num_versions == 1
    with pytest.raises(ValueError, match="model_name"):
        tfserving.write_models_config(path, {"bad name/..": "/x"})


def test_batching_parameters(tmp_path):
    path = tfserving.write_batching_parameters(
        str(tmp_path / "batching.txt"), max_batch_size=16, batch_timeout_micros=2000
    )
    with open(path) as f:
        text = f.read()
    assert "max_batch_size { value: 16 }" in text
    assert "batch_timeout_micros { value: 2000 }" in text
    # Zero padding would enter the resize and change predictions: off unless asked for.
    assert "pad_variable_length_inputs: false" in text
    with pytest.raises(ValueError, match="max_batch_size"):
        tfserving.write_batching_parameters(str(tmp_path / "b.txt"), max_batch_size=0)


def test_warmup_records_round_trip(tmp_path):
    frames = np.arange(2 * 3 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 3, 4, 5, 3)
    requests = [tfserving.predict_request("m", {"frames": frames}, "serving_default")]
    path = tfserving.write_warmup_requests(str(tmp_path), requests)
    assert path.endswith(os.path.join("assets.extra", "tf_serving_warmup_requests"))
    (back,) = tfserving.read_warmup_requests(str(tmp_path))
    assert back.model_spec.name == "m" and back.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(tf.make_ndarray(back.inputs["frames"]), frames)
    with pytest.raises(ValueError, match="at least one"):
        tfserving.write_warmup_requests(str(tmp_path), [])


@pytest.mark.parametrize(
    "name",
    ["..", ".", "../escape", "a/b", "/abs", "a\\b", ".hidden", "-flag", "", "a b", "x:predict",
     "slowfast\n", "a" * 256, None, 3],
)
def test_unsafe_model_names_are_refused(name):
    with pytest.raises(ValueError, match="model_name"):
        tfserving.validate_model_name(name)


@pytest.mark.parametrize("name", ["slowfast", "slow_r50.v2", "A-1", "9", "a" * 255])
def test_safe_model_names_pass(name):
    assert tfserving.validate_model_name(name) == name


@pytest.mark.parametrize("version", [-1, True, 1.0, "3", 2**63])
def test_versions_must_be_positive_int64(tmp_path, version):
    with pytest.raises(ValueError, match="positive integer"):
        tfserving.resolve_version_dir(str(tmp_path), version)
    assert tfserving.validate_version(2**63 - 1) == 2**63 - 1


def test_warmup_file_is_all_or_nothing(tmp_path):
    """A failure while writing the records leaves no (partial) warm-up file and no temp file."""
    good = tfserving.predict_request("m", {"frames": np.zeros((1, 2, 4, 4, 3), np.uint8)})
    with pytest.raises(TypeError):  # raised after the first record was written
        tfserving.write_warmup_requests(str(tmp_path), [good, "not a request"])
    folder = tmp_path / "assets.extra"
    assert os.listdir(folder) == []
