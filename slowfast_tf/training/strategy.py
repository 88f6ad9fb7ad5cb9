"""Distribution strategies and mixed precision for ``train.py`` (kept out of the model files).

``default`` = one device; ``mirrored`` = all local GPUs; ``multi_worker`` =
``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` environment variable
(``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``);
``tpu`` = ``TPUStrategy`` on the ``--tpu`` address (``""`` or ``"local"`` on a TPU VM).
"""

import json
import os

import keras
import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def build_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    """Creates the distribution strategy named ``name``.

    Args:
        name: one of ``"default"``, ``"mirrored"``, ``"multi_worker"``, ``"tpu"``.
        tpu: TPU address for ``"tpu"`` (``grpc://...``, a TPU name, or ``"local"``).

    Returns:
        a ``tf.distribute.Strategy``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("multi_worker without TF_CONFIG: running as a single local worker.")
        communication = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
    if tpu is None:
        raise ValueError("strategy='tpu' needs a TPU address. Received: tpu=None")
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


def set_precision_policy(policy: str = "float32") -> None:
    """Sets the global Keras dtype policy.

    ``mixed_float16`` makes ``model.compile`` wrap the optimizer in a ``LossScaleOptimizer``
    (dynamic loss scaling, as torch's GradScaler); ``mixed_bfloat16`` needs no scaling.
    Variables stay float32; the classifier's logits are cast to float32 before the loss.

    Args:
        policy: one of ``"float32"``, ``"mixed_float16"``, ``"mixed_bfloat16"``.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={policy!r}")
    keras.mixed_precision.set_dtype_policy(policy)
