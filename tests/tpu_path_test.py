"""The TPU-relevant pieces, tested on CPU: a static-shape input pipeline without Python ops, and
an XLA-compiled train step (float32 and the TPU's mixed_bfloat16). The TPUStrategy wiring itself
is tested with a fake resolver in slowfast_tf/training/strategy_test.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf import compat
from slowfast_tf.data import DataConfig, build_dataset, make_distributed_dataset
from slowfast_tf.models import build_model
from slowfast_tf.testing.fake_records import fake_video_record, write_records
from slowfast_tf.training import trainer

CONFIG = DataConfig(
    num_frames=8, sampling_rate=2, alpha=4, train_crop=24, test_crop=32,
    train_jitter_scales=(32, 40), num_clips=2, num_crops=3, num_classes=5,
)
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def dataset_ops(ds):
    """Every op in the dataset's graph, including those inside map/scan functions."""
    # tf.data's own serialization (what a remote TPU worker receives).
    graph = tf.compat.v1.GraphDef.FromString(compat.dataset_graph_def(ds))
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = tmp_path_factory.mktemp("tpu") / "train.tfrecord"
    return write_records(path, [fake_video_record(20, 32, 32, (i % 5,), video_id=f"v{i}")
                                for i in range(3)])


def test_training_pipeline_is_tpu_ready(records):
    ds = build_dataset(records, CONFIG, "train", batch_size=2, seed=0)
    # Static shapes: drop_remainder gives a fixed batch dimension, the crop fixes the rest.
    specs = tf.nest.flatten(ds.element_spec)
    assert all(spec.shape.is_fully_defined() for spec in specs), ds.element_spec
    inputs, label = ds.element_spec
    assert {k: tuple(v.shape) for k, v in inputs.items()} == {
        "slow": (2, 2, 24, 24, 3), "fast": (2, 8, 24, 24, 3)}
    assert tuple(label.shape) == (2,)
    # No Python-side state: no py_function / numpy_function anywhere in the graph.
    assert not dataset_ops(ds) & PYTHON_OPS
    # The probe does see a Python op when there is one.
    leaky = ds.map(lambda x, y: (x, tf.py_function(lambda t: t, [y], tf.int32)))
    assert dataset_ops(leaky) & PYTHON_OPS
    # A batch has the declared shapes (the 3 videos wrap around: 2 full batches from 3 videos).
    for x, y in ds.take(2):
        assert x["fast"].shape == (2, 8, 24, 24, 3) and y.shape == (2,)


def test_per_replica_pipeline_keeps_static_shapes(records):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = make_distributed_dataset(strategy, records, CONFIG, "train", global_batch_size=2, seed=0)
    specs = tf.nest.flatten(dist.element_spec)
    assert all(spec.shape.is_fully_defined() for spec in specs), dist.element_spec


def _tiny_model_and_data():
    keras.utils.set_random_seed(0)
    model = build_model("slowfast_r50_8x8", num_classes=3, depth=18, width=8, beta_inv=4,
                        num_frames=8, alpha=4, train_crop_size=32)
    rng = np.random.default_rng(0)
    clips = {"slow": rng.normal(size=(4, 2, 32, 32, 3)).astype("float32"),
             "fast": rng.normal(size=(4, 8, 32, 32, 3)).astype("float32")}
    labels = np.array([0, 1, 2, 0], "int32")
    ds = tf.data.Dataset.from_tensor_slices((clips, labels)).repeat().batch(2, drop_remainder=True)
    recipe = trainer.RecipeConfig(num_classes=3, epochs=1, base_lr=0.1, base_batch_size=2,
                                  global_batch_size=2, warmup_epochs=0, jit_compile=True)
    trainer.compile_model(model, recipe, steps_per_epoch=2)
    return model, ds


@pytest.mark.slow  # XLA compiles the whole train step (~1 min on 2 cores)
def test_jit_compiled_train_step_runs_on_cpu():
    model, ds = _tiny_model_and_data()
    assert model.jit_compile is True  # Keras did not fall back to a non-XLA step
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert sum(changed) > len(changed) // 2


@pytest.mark.slow
def test_train_step_lowers_to_xla_under_the_tpu_bfloat16_policy():
    # Lowering to HLO fails on any op without an XLA kernel; bfloat16 is the TPU's compute type.
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model, ds = _tiny_model_and_data()
        step = tf.function(model.train_step, jit_compile=True)
        hlo = step.experimental_get_compiler_ir(next(iter(ds)))(stage="hlo")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert "convolution" in hlo and "bf16" in hlo
    assert model.layers[-1].compute_dtype == "bfloat16" or any(
        layer.compute_dtype == "bfloat16" for layer in model.layers)
