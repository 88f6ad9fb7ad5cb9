"""The one door to private Keras and TensorFlow APIs.

Every use of a ``keras.src`` module or of a ``_private`` attribute of a Keras or TensorFlow object
goes through a function here, so that an upgrade has one file to re-check. ``compat_test.py``
checks each of them against the pinned versions (``VERIFIED_VERSIONS``) and fails loudly,
naming the function, when one changes underneath.

Why each one is needed (a public API would be used if there were one):

* ``flatten_layers``: ``Layer._flatten_layers``, the only walk over nested layers in Keras 3
  (``model.layers`` stops at the first level).
* ``load_weights_only``: ``keras.src.saving.saving_lib.load_weights_only``; the public
  ``model.load_weights`` has no ``objects_to_skip`` (load everything but the head).
* ``model_strategy`` / ``build_from_specs``: Keras 3.15's ``fit`` under a tf.distribute strategy
  builds its state from a real batch (``_maybe_symbolic_build``), which fails for dict inputs
  under ``MultiWorkerMirroredStrategy``; we build from specs (``_symbolic_build``) instead and
  turn that step off.
* ``in_multi_worker_mode``: ``strategy.extended._in_multi_worker_mode()``, the only way to tell a
  one-worker ``MultiWorkerMirroredStrategy`` from a real multi-worker one.
* ``BackupAndRestore``: Keras's callback writes through the private ``_save_model`` hook; the
  subclass here exposes it as ``save_backup`` (overridden to write from the chief only).
* ``initial_epoch``: the epoch ``BackupAndRestore`` restored (``model._initial_epoch``).
* ``uses_weight_decay`` / ``variable_index``: the optimizer's ``_use_weight_decay`` (honours
  ``exclude_from_weight_decay``) and ``_get_variable_index`` (slot lookup in ``update_step``).
* ``is_graph_model`` / ``run_through_graph`` / ``inputs_struct``: a functional model's graph
  walk and input structure, for counting FLOPs from shapes alone.
* ``session_run_raw``: ``Session._call_tf_sessionrun``, the raw C API run (no Python-side dtype
  casts or shape checks), as TensorFlow Serving's C++ ``Session::Run`` does.
* ``dataset_graph_def``: ``Dataset._as_serialized_graph``, the graph a remote tf.data / TPU
  worker receives.

This module imports only ``keras`` at top level (model code may use it on any backend);
TensorFlow-only helpers take TensorFlow objects as arguments.
"""

from __future__ import annotations

import keras

# The versions every function below was checked against (compat_test.py::test_pinned_versions).
VERIFIED_VERSIONS = {"keras": "3.15", "tensorflow": "2.21"}


# --- Layers and weights ------------------------------------------------------------------------


def flatten_layers(model, include_self: bool = True, recursive: bool = True) -> list:
    """Every layer of ``model``, nested models included (``Layer._flatten_layers``)."""
    return list(model._flatten_layers(include_self=include_self, recursive=recursive))


def load_weights_only(model, path: str, objects_to_skip=None) -> None:
    """Loads a ``.weights.h5`` file into ``model``, leaving ``objects_to_skip`` (layers) untouched."""
    from keras.src.saving import saving_lib

    saving_lib.load_weights_only(model, path, objects_to_skip=objects_to_skip)


# --- fit under tf.distribute -------------------------------------------------------------------


def model_strategy(model):
    """The tf.distribute strategy ``model`` was created under, or None (TensorFlow backend)."""
    return getattr(model, "_distribute_strategy", None)


def build_from_specs(model, data_batch) -> None:
    """Builds optimizer, loss and metric state from specs and skips ``fit``'s own build.

    Args:
        model: compiled Keras model created under a tf.distribute strategy.
        data_batch: ``(inputs, labels)`` of ``keras.KerasTensor`` specs.
    """
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=data_batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def in_multi_worker_mode(strategy) -> bool:
    """True when ``strategy`` spans several workers (a cluster in ``TF_CONFIG``)."""
    return bool(strategy.extended._in_multi_worker_mode())


# --- Callbacks -----------------------------------------------------------------------------------


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` with a public write hook, ``save_backup``.

    Keras calls the private ``_save_model`` at every save point; override ``save_backup``
    (and call ``super().save_backup()``) to change when the backup is written.
    """

    def _save_model(self):
        self.save_backup()

    def save_backup(self):
        super()._save_model()


def initial_epoch(model) -> int:
    """The epoch ``BackupAndRestore`` restored at ``on_train_begin`` (0 for a fresh run)."""
    return int(getattr(model, "_initial_epoch", 0) or 0)


# --- Optimizers ----------------------------------------------------------------------------------


def uses_weight_decay(optimizer, variable) -> bool:
    """Whether ``optimizer`` decays ``variable`` (honours ``exclude_from_weight_decay``)."""
    return bool(optimizer._use_weight_decay(variable))


def variable_index(optimizer, variable) -> int:
    """Index of ``variable`` in ``optimizer``'s slot lists (``momentums[...]``)."""
    return optimizer._get_variable_index(variable)


# --- Functional graphs ---------------------------------------------------------------------------


def is_graph_model(op) -> bool:
    """True for a model with a functional graph that ``run_through_graph`` can walk."""
    return isinstance(op, keras.Model) and hasattr(op, "_run_through_graph")


def run_through_graph(model, inputs, operation_fn):
    """Runs ``model``'s graph on ``inputs``, calling ``operation_fn(op)(*args, **kwargs)`` per node."""
    return model._run_through_graph(inputs, operation_fn=operation_fn)


def inputs_struct(model):
    """The structure (dict, list or single tensor) ``model`` was built with."""
    return model._inputs_struct


# --- TensorFlow runtime --------------------------------------------------------------------------


def session_run_raw(session, feeds: dict, fetches: list) -> list:
    """Runs a TF1 session through the C API, as TensorFlow Serving does.

    Args:
        session: ``tf.compat.v1.Session``.
        feeds: ``{tf.Tensor: numpy array}``; arrays go to the runtime unchanged (a wrong dtype is
            the runtime's error, not a silent cast).
        fetches: list of ``tf.Tensor``.

    Returns:
        list of numpy arrays, in ``fetches`` order.
    """
    feeds = {tensor._as_tf_output(): value for tensor, value in feeds.items()}
    fetches = [tensor._as_tf_output() for tensor in fetches]
    return session._call_tf_sessionrun(None, feeds, fetches, [], None)


def dataset_graph_def(dataset) -> bytes:
    """The serialized ``GraphDef`` of a ``tf.data.Dataset`` (what a remote worker receives)."""
    return dataset._as_serialized_graph().numpy()
