"""Every private Keras / TensorFlow API in ``compat.py`` exists and behaves as the code assumes.

When a pinned version changes, this file is the checklist: each test names the function it
guards, and ``test_pinned_versions`` says which versions were verified.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf import compat


def _tiny_model(name="tiny"):
    inputs = {"a": keras.Input((3,), name="a"), "b": keras.Input((2,), name="b")}
    inner_in = keras.Input((5,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    x = keras.layers.Concatenate(name="concat")([inputs["a"], inputs["b"]])
    x = inner(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = {"a": rng.normal(size=(n, 3)).astype("float32"), "b": rng.normal(size=(n, 2)).astype("float32")}
    return x, rng.normal(size=(n, 2)).astype("float32")


def test_pinned_versions():
    found = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for package, verified in compat.VERIFIED_VERSIONS.items():
        major_minor = ".".join(found[package].split(".")[:2])
        assert major_minor == verified, (
            f"{package} is {found[package]}, but slowfast_tf/compat.py was verified against "
            f"{package} {verified}. Re-verify every function in slowfast_tf/compat.py against the "
            "new version (read the private code it calls; run slowfast_tf/compat_test.py, "
            "slowfast_tf/training/*_test.py and tests/train_multi_worker_test.py), then update "
            "compat.VERIFIED_VERSIONS."
        )


def test_flatten_layers_walks_nested_models():
    model = _tiny_model()
    names = [layer.name for layer in compat.flatten_layers(model)]
    assert names[0] == "tiny" and {"concat", "inner", "inner_dense", "head"} <= set(names)
    without_self = [layer.name for layer in compat.flatten_layers(model, include_self=False)]
    assert "tiny" not in without_self and "inner_dense" in without_self
    shallow = [layer.name for layer in compat.flatten_layers(model, recursive=False)]
    assert "inner" in shallow and "inner_dense" not in shallow


def test_load_weights_only_leaves_skipped_layers_untouched(tmp_path):
    model = _tiny_model()
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    saved = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
    for layer in model.layers:
        for w in layer.weights:
            w.assign(w + 1.0)
    head = model.get_layer("head")
    perturbed_head = [np.array(w) for w in head.get_weights()]
    compat.load_weights_only(model, path, objects_to_skip=[head])
    np.testing.assert_array_equal(model.get_layer("inner").get_weights()[0], saved["inner"][0])
    for now, before in zip(head.get_weights(), perturbed_head):
        np.testing.assert_array_equal(now, before)


def test_build_from_specs_replaces_fits_own_build():
    assert compat.model_strategy(_tiny_model()) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _tiny_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    assert compat.model_strategy(model) is strategy
    label = keras.KerasTensor((None, 2), "float32")
    compat.build_from_specs(model, (model.input, label))
    assert model.optimizer.built and len(model.optimizer.momentums) == len(
        model.trainable_variables
    )
    # fit must still go through `_maybe_symbolic_build` (else the patch would not be needed,
    # or would no longer take effect): record the calls.
    calls = []
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: calls.append(1)
    x, y = _batch()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert calls and np.isfinite(history.history["loss"][0])


def test_in_multi_worker_mode():
    assert compat.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"])) is False
    # The multi-worker strategy's extended class (built only in tests/train_multi_worker_test.py:
    # a process can configure collective ops once).
    from tensorflow.python.distribute import collective_all_reduce_strategy

    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    assert callable(extended._in_multi_worker_mode)


def test_backup_and_restore_hook_and_initial_epoch(tmp_path):
    backup_dir = str(tmp_path / "backup")
    saves = []

    class Counting(compat.BackupAndRestore):
        def save_backup(self):
            saves.append(1)
            super().save_backup()

    x, y = _batch()
    model = _tiny_model()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Counting(backup_dir, delete_checkpoint=False)])
    assert len(saves) == 2 and os.listdir(backup_dir)

    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(compat.initial_epoch(self.model))

    resumed = _tiny_model()
    resumed.compile(optimizer="sgd", loss="mse")
    assert compat.initial_epoch(resumed) == 0
    callbacks = [compat.BackupAndRestore(backup_dir, delete_checkpoint=False), Probe()]
    history = resumed.fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
    assert seen == [2] and len(history.history["loss"]) == 1


def test_optimizer_weight_decay_and_slot_index():
    a = keras.Variable(np.ones(3, "float32"), name="a")
    b = keras.Variable(np.ones(2, "float32"), name="b")
    opt = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01)
    opt.exclude_from_weight_decay(var_list=[b])
    opt.build([a, b])
    assert compat.uses_weight_decay(opt, a) is True
    assert compat.uses_weight_decay(opt, b) is False
    assert compat.variable_index(opt, a) == 0 and compat.variable_index(opt, b) == 1
    assert tuple(opt.momentums[compat.variable_index(opt, b)].shape) == (2,)


def test_graph_walk():
    model = _tiny_model()
    assert compat.is_graph_model(model) and not compat.is_graph_model(keras.layers.Dense(2))
    struct = compat.inputs_struct(model)
    assert isinstance(struct, dict) and sorted(struct) == ["a", "b"]
    x, _ = _batch()
    ops_seen = []

    def operation_fn(op):
        ops_seen.append(op.name)
        return op

    out = compat.run_through_graph(model, [x[k] for k in sorted(struct)], operation_fn)
    assert ops_seen == ["concat", "inner", "head"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(model(x)), rtol=1e-6)


def test_session_run_raw_does_not_cast():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        y = tf.multiply(x, 2.0, name="y")
    with tf.compat.v1.Session(graph=graph) as session:
        (value,) = compat.session_run_raw(session, {x: np.array([1, 2], "float32")}, [y])
        np.testing.assert_array_equal(value, [2, 4])
        # The runtime, not Python, rejects a wrong dtype (as TensorFlow Serving does).
        with pytest.raises(tf.errors.InvalidArgumentError, match="float"):
            compat.session_run_raw(session, {x: np.array([1, 2], "int32")}, [y])


def test_dataset_graph_def():
    ds = tf.data.Dataset.range(3).map(lambda v: v + 1)
    graph = tf.compat.v1.GraphDef.FromString(compat.dataset_graph_def(ds))
    assert {"RangeDataset", "MapDataset"} <= {node.op for node in graph.node}
