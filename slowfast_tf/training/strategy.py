"""Distribution strategies and mixed precision for ``train.py`` (kept out of the model files).

``auto`` (the default) = the TPU if one is configured (``--tpu`` or ``TPU_NAME``), else
``mirrored`` over all local GPUs if there are several, ``one_device`` on the GPU if there is one,
else ``default`` (the CPU). ``default`` = TensorFlow's default strategy (one device);
``one_device`` = ``OneDeviceStrategy`` on GPU 0 (the CPU without one); ``mirrored`` = all local
GPUs; ``multi_worker`` = ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG``
environment variable (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
"index": i}}``); ``tpu`` = ``TPUStrategy`` on the ``--tpu`` address (``""`` or ``"local"`` on a
TPU VM, else ``TPU_NAME``).

Precision ``auto`` = ``mixed_bfloat16`` on TPU, ``mixed_float16`` on GPUs of compute capability
>= 7.0 (tensor cores), ``float32`` otherwise.
"""

import json
import os

import keras
import tensorflow as tf
from absl import logging

from slowfast_tf.training import devices

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# Tensor cores (Volta and newer) make float16 math fast; older GPUs gain little or lose.
MIN_FLOAT16_CAPABILITY = (7, 0)


class DeviceError(ValueError):
    """The requested accelerator is not there (``--require_gpu``)."""


def tpu_address(tpu: str | None = None) -> str | None:
    """The configured TPU: ``tpu`` if given, else ``$TPU_NAME``, else ``"local"`` when this
    machine has TPU chips (a TPU VM), else ``None``."""
    if tpu is not None:
        return tpu
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    try:
        if tf.config.list_physical_devices("TPU"):
            return "local"
    except RuntimeError:
        pass
    return None


def choose_strategy(name: str, *, tpu: str | None, num_gpus: int) -> str:
    """Resolves ``"auto"`` to a concrete strategy name; other names are returned unchanged.

    Args:
        name: a name from `STRATEGIES`.
        tpu: the configured TPU address (`tpu_address`), ``None`` without one.
        num_gpus: GPUs TensorFlow sees.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name != "auto":
        return name
    if tpu is not None:
        return "tpu"
    if num_gpus > 1:
        return "mirrored"
    return "one_device" if num_gpus == 1 else "default"


def build_strategy(name: str = "default", tpu: str | None = None,
                   require_gpu: bool = False) -> tf.distribute.Strategy:
    """Creates the distribution strategy named ``name``.

    Args:
        name: one of `STRATEGIES` (``"auto"``: see the module docstring).
        tpu: TPU address for ``"tpu"`` (``grpc://...``, a TPU name, or ``"local"``); for
            ``"auto"`` and ``"tpu"`` it defaults to ``$TPU_NAME``.
        require_gpu: raise `DeviceError` instead of warning when a non-TPU strategy finds no GPU.

    Returns:
        a ``tf.distribute.Strategy``.
    """
    if name in ("auto", "tpu"):
        tpu = tpu_address(tpu)
    gpus = tf.config.list_physical_devices("GPU")
    resolved = choose_strategy(name, tpu=tpu, num_gpus=len(gpus))
    if name == "auto":
        logging.info("--strategy=auto: %s (GPUs: %d, TPU: %s).", resolved, len(gpus), tpu)
    if resolved != "tpu" and not gpus:
        if require_gpu:
            raise DeviceError(
                "--require_gpu: TensorFlow sees no GPU (install the CUDA libraries with "
                f"`pip install -e '.[gpu]'`; check nvidia-smi). Received: strategy={name!r}, GPUs=0"
            )
        if resolved in ("mirrored", "one_device"):
            logging.warning("*" * 78)
            logging.warning("--strategy=%s but TensorFlow sees NO GPU: everything runs on the "
                            "CPU. Pass --require_gpu to make this an error.", name)
            logging.warning("*" * 78)
    if resolved == "default":
        return tf.distribute.get_strategy()
    if resolved == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if resolved == "mirrored":
        return tf.distribute.MirroredStrategy()
    if resolved == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("multi_worker without TF_CONFIG: running as a single local worker.")
        communication = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
    if tpu is None:
        raise ValueError("strategy='tpu' needs a TPU: pass --tpu (a name, grpc://host:port, or "
                         "'local' on a TPU VM) or set TPU_NAME. Received: tpu=None")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True on the worker that writes checkpoints, logs and summaries.

    With ``TF_CONFIG`` the chief is task ``chief`` if the cluster has one, else ``worker`` 0.
    """
    del strategy  # The decision only depends on TF_CONFIG, which every strategy reads.
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    task_type, task_index = task.get("type"), int(task.get("index", 0))
    if task_type is None:
        return True
    if "chief" in tf_config.get("cluster", {}):
        return task_type == "chief"
    return task_type == "worker" and task_index == 0


def task_id() -> str:
    """``"<type>_<index>"`` of this process from ``TF_CONFIG`` (``"chief_0"`` without one)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"{task.get('type', 'chief')}_{task.get('index', 0)}"


def accelerator_of(strategy: tf.distribute.Strategy | None = None) -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: what ``strategy``'s replicas compute on."""
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.TPUStrategy) or "TPU" in type(strategy).__name__:
        return "tpu"
    try:
        devices = strategy.extended.worker_devices
    except (RuntimeError, AttributeError):  # the default strategy places ops on GPU:0 if any
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu"


def resolve_precision(policy: str, accelerator: str,
                      gpu_capabilities: list | tuple = ()) -> str:
    """Resolves ``"auto"`` (see the module docstring); other policies are returned unchanged.

    Args:
        policy: a name from `PRECISIONS`.
        accelerator: ``"tpu"``, ``"gpu"`` or ``"cpu"`` (`accelerator_of`).
        gpu_capabilities: ``(major, minor)`` (or ``None`` if unknown) per GPU in use; float16
            is chosen only when every one is >= `MIN_FLOAT16_CAPABILITY`.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={policy!r}")
    if policy != "auto":
        return policy
    if accelerator == "tpu":
        return "mixed_bfloat16"
    if accelerator == "gpu" and gpu_capabilities and all(
        c is not None and tuple(c) >= MIN_FLOAT16_CAPABILITY for c in gpu_capabilities
    ):
        return "mixed_float16"
    return "float32"


def set_precision_policy(policy: str = "float32",
                         strategy: tf.distribute.Strategy | None = None) -> str:
    """Sets the global Keras dtype policy and returns its name.

    ``mixed_float16`` makes ``model.compile`` wrap the optimizer in a ``LossScaleOptimizer``
    (dynamic loss scaling, as torch's GradScaler); ``mixed_bfloat16`` needs no scaling.
    Variables stay float32; the classifier's logits are cast to float32 before the loss.

    Args:
        policy: one of `PRECISIONS`; ``"auto"`` picks from ``strategy``'s devices.
        strategy: the strategy in use, for ``"auto"`` (default: the current one).
    """
    if policy == "auto":
        accelerator = accelerator_of(strategy)
        capabilities = devices.gpu_compute_capabilities() if accelerator == "gpu" else ()
        policy = resolve_precision(policy, accelerator, capabilities)
        logging.info("--precision=auto: %s on %s.", policy, accelerator)
    else:
        resolve_precision(policy, "cpu")  # validates the name
    keras.mixed_precision.set_dtype_policy(policy)
    return policy
