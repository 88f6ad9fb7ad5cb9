"""Strategy and precision choice (auto, warnings, --require_gpu) and the TPU wiring, on CPU.

GPUs and TPUs are faked by replacing the TensorFlow calls the module makes; what runs for real
is the decision logic and the order of the TPU set-up calls.
"""

import logging

import keras
import pytest
import tensorflow as tf

from slowfast_tf.training import devices
from slowfast_tf.training import strategy as strategy_lib


@pytest.fixture(autouse=True)
def _restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Makes TF report ``n`` GPUs of the given compute capability (devices are never used)."""

    def install(n, capability=(8, 0), name="NVIDIA A100-SXM4-40GB"):
        real = tf.config.list_physical_devices
        gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(n)]
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None: gpus if kind == "GPU" else real(kind))
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda d: {"device_name": name, "compute_capability": capability})
        return gpus

    return install


@pytest.mark.parametrize("name, tpu, gpus, expected", [
    ("auto", "grpc://10.0.0.2:8470", 8, "tpu"),   # a configured TPU wins over GPUs
    ("auto", "", 0, "tpu"),                        # "" = the TPU VM's own chips
    ("auto", None, 4, "mirrored"),
    ("auto", None, 1, "one_device"),
    ("auto", None, 0, "default"),
    ("mirrored", None, 0, "mirrored"),             # explicit names are kept
    ("multi_worker", "x", 2, "multi_worker"),
])
def test_choose_strategy(name, tpu, gpus, expected):
    assert strategy_lib.choose_strategy(name, tpu=tpu, num_gpus=gpus) == expected


def test_choose_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match="Received: strategy='gpu'"):
        strategy_lib.choose_strategy("gpu", tpu=None, num_gpus=1)


@pytest.mark.parametrize("policy, accelerator, caps, expected", [
    ("auto", "tpu", (), "mixed_bfloat16"),
    ("auto", "gpu", [(8, 0), (8, 0)], "mixed_float16"),
    ("auto", "gpu", [(7, 0)], "mixed_float16"),
    ("auto", "gpu", [(6, 1)], "float32"),            # Pascal: no tensor cores
    ("auto", "gpu", [(8, 0), (6, 0)], "float32"),    # every GPU must qualify
    ("auto", "gpu", [None], "float32"),              # unknown capability: stay safe
    ("auto", "cpu", (), "float32"),
    ("float32", "tpu", (), "float32"),               # explicit flags override
    ("mixed_float16", "cpu", (), "mixed_float16"),
])
def test_resolve_precision(policy, accelerator, caps, expected):
    assert strategy_lib.resolve_precision(policy, accelerator, caps) == expected


def test_resolve_precision_rejects_unknown_policies():
    with pytest.raises(ValueError, match="Received: precision='float16'"):
        strategy_lib.resolve_precision("float16", "gpu")


def test_auto_on_this_cpu_machine_is_the_default_strategy_in_float32():
    strategy = strategy_lib.build_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert strategy_lib.accelerator_of(strategy) == "cpu"
    assert strategy_lib.set_precision_policy("auto", strategy) == "float32"
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_one_device_falls_back_to_the_cpu():
    strategy = strategy_lib.build_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.extended.worker_devices[0].endswith("CPU:0")
    assert strategy_lib.accelerator_of(strategy) == "cpu"


def test_mirrored_without_gpu_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="absl"):
        strategy = strategy_lib.build_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NO GPU" in m and "--require_gpu" in m for m in warnings), warnings
    assert any(set(m) == {"*"} for m in warnings)  # the banner


@pytest.mark.parametrize("name", ["auto", "default", "mirrored", "one_device"])
def test_require_gpu_without_gpu_is_an_error(name):
    with pytest.raises(strategy_lib.DeviceError, match=f"Received: strategy='{name}', GPUs=0"):
        strategy_lib.build_strategy(name, require_gpu=True)


def test_auto_with_gpus_builds_mirrored_and_picks_float16(monkeypatch, fake_gpus):
    fake_gpus(2)
    built = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda: built.append("mirrored") or
                        tf.distribute.get_strategy())
    strategy = strategy_lib.build_strategy("auto", require_gpu=True)
    assert built == ["mirrored"]
    # The default strategy runs on GPU:0 when TF sees one.
    assert strategy_lib.accelerator_of(strategy) == "gpu"
    assert strategy_lib.set_precision_policy("auto", strategy) == "mixed_float16"
    assert devices.visible_devices()["GPU"] == ["NVIDIA A100-SXM4-40GB cc 8.0"] * 2


def test_auto_with_one_old_gpu_uses_one_device_and_float32(monkeypatch, fake_gpus):
    fake_gpus(1, capability=(6, 1), name="Tesla P100")
    placed = []
    monkeypatch.setattr(tf.distribute, "OneDeviceStrategy",
                        lambda device: placed.append(device) or tf.distribute.get_strategy())
    strategy = strategy_lib.build_strategy("auto")
    assert placed == ["/gpu:0"]
    assert strategy_lib.set_precision_policy("auto", strategy) == "float32"


class _FakeTPU:
    """Records the TPU set-up calls in order, as TensorFlow would receive them."""

    def __init__(self, monkeypatch):
        self.calls = []
        fake = self

        class Resolver:
            def __init__(self, tpu=None):
                fake.calls.append(("resolver", tpu))
                self.tpu = tpu

        class TPUStrategy:
            num_replicas_in_sync = 8

            def __init__(self, resolver):
                fake.calls.append(("strategy", resolver.tpu))

        self.strategy_class = TPUStrategy
        monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
        monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                            lambda r: self.calls.append(("connect", r.tpu)))
        monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                            lambda r: self.calls.append(("initialize", r.tpu)))
        monkeypatch.setattr(tf.distribute, "TPUStrategy", TPUStrategy)


@pytest.mark.parametrize("name, tpu_flag, env, address", [
    ("tpu", "grpc://10.0.0.2:8470", None, "grpc://10.0.0.2:8470"),
    ("tpu", "local", None, "local"),
    ("auto", None, "my-tpu-v3-8", "my-tpu-v3-8"),   # TPU_NAME makes auto pick the TPU
    ("auto", "", None, ""),
])
def test_tpu_wiring_resolves_connects_initializes_then_builds(monkeypatch, name, tpu_flag, env,
                                                              address):
    if env is None:
        monkeypatch.delenv("TPU_NAME", raising=False)
    else:
        monkeypatch.setenv("TPU_NAME", env)
    fake = _FakeTPU(monkeypatch)
    # --require_gpu does not apply to the TPU.
    strategy = strategy_lib.build_strategy(name, tpu_flag, require_gpu=True)
    assert isinstance(strategy, fake.strategy_class)
    assert fake.calls == [("resolver", address), ("connect", address), ("initialize", address),
                          ("strategy", address)]
    assert strategy_lib.accelerator_of(strategy) == "tpu"
    assert strategy_lib.set_precision_policy("auto", strategy) == "mixed_bfloat16"
    assert keras.mixed_precision.dtype_policy().compute_dtype == "bfloat16"


def test_tpu_without_an_address_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    fake = _FakeTPU(monkeypatch)
    with pytest.raises(ValueError, match="TPU_NAME. Received: tpu=None"):
        strategy_lib.build_strategy("tpu")
    assert fake.calls == []
