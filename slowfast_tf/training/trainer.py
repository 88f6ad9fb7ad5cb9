"""The training loop: ``model.fit`` with the PySlowFast recipe, fault-tolerant checkpoints and logs.

``train.py`` builds the strategy, the precision policy, the model (inside ``strategy.scope()``) and
the datasets, then calls ``compile_model`` and ``fit``. ``model.fit`` already does the
distributed-training bookkeeping that TF Model Garden writes by hand: the loss is divided by the
number of replicas before the gradient all-reduce (``scale_loss_for_distribution``) and, under the
``mixed_float16`` policy, ``compile`` wraps the optimizer in a ``LossScaleOptimizer`` (dynamic loss
scaling). Resuming after a kill is ``BackupAndRestore``: it restores the weights, the optimizer
state (momentum buffers and ``iterations``, hence the LR schedule position) and the epoch.
"""

import dataclasses
import importlib.util
import json
import os
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from slowfast_tf import clip_spec, compat
from slowfast_tf.training import losses, lr_schedule, metrics, optimizer, precise_bn, strategy
from slowfast_tf.utils import fileio

HEAD_LAYER_NAMES = ("head_projection",)


@dataclasses.dataclass
class RecipeConfig:
    """Optimisation recipe (PySlowFast ``SOLVER`` / ``BN`` / ``TRAIN`` keys in brackets).

    Attributes:
        num_classes: int, classifier width.
        multi_label: bool, sigmoid/BCE and mAP instead of softmax/CE and top-k (Charades).
        epochs: int, ``MAX_EPOCH``.
        base_lr: float, LR for ``base_batch_size`` clips (``BASE_LR`` 0.1 for 64).
        base_batch_size: int, batch the base LR refers to (linear scaling rule).
        global_batch_size: int, clips per step over all replicas.
        lr_policy: ``"cosine"`` or ``"steps_with_relative_lrs"``.
        warmup_epochs: float, ``WARMUP_EPOCHS``.
        warmup_start_lr: float, ``WARMUP_START_LR`` for ``base_batch_size`` (scaled like base_lr).
        cosine_end_lr: float, ``COSINE_END_LR``.
        lr_steps: tuple, ``STEPS`` (epochs) for the steps policy.
        lr_multipliers: tuple, ``LRS`` for the steps policy.
        momentum: float, ``MOMENTUM``.
        nesterov: bool, ``NESTEROV``.
        weight_decay: float, ``WEIGHT_DECAY`` (BN gamma/beta never decayed, ``BN.WEIGHT_DECAY=0``).
        weight_decay_mode: ``"coupled"`` (torch, default) or ``"decoupled"`` (Keras).
        clipnorm: optional float, global gradient clipping (off in PySlowFast).
        precise_bn_batches: int, batches for precise BN before each checkpoint (0 = off).
        checkpoint_period: int, epochs between kept checkpoints (``CHECKPOINT_PERIOD``).
        jit_compile: bool, XLA-compile the train step.
    """

    num_classes: int
    multi_label: bool = False
    epochs: int = 196
    base_lr: float = 0.1
    base_batch_size: int = 64
    global_batch_size: int = 64
    lr_policy: str = "cosine"
    warmup_epochs: float = 34.0
    warmup_start_lr: float = 0.01
    cosine_end_lr: float = 0.0
    lr_steps: tuple = ()
    lr_multipliers: tuple = ()
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    weight_decay_mode: str = "coupled"
    clipnorm: float | None = None
    precise_bn_batches: int = 0
    checkpoint_period: int = 1
    jit_compile: bool = False

    def __post_init__(self):
        if self.lr_policy == "cosine" and 0 < self.epochs < self.warmup_epochs:
            # PySlowFast's recipe warms up for 34 of 196 epochs; a short run (smoke tests, quick
            # fine-tunes) keeps the recipe but cannot warm up for longer than it trains.
            logging.warning("warmup_epochs=%g is longer than epochs=%d: warming up for %d epochs.",
                            self.warmup_epochs, self.epochs, self.epochs)
            self.warmup_epochs = float(self.epochs)

    def learning_rate(self, steps_per_epoch: int) -> lr_schedule.SlowFastLRSchedule:
        """The per-iteration schedule after the linear scaling rule."""
        scale = lr_schedule.scale_learning_rate(1.0, self.global_batch_size, self.base_batch_size)
        return lr_schedule.SlowFastLRSchedule(
            steps_per_epoch,
            base_lr=self.base_lr * scale,
            max_epoch=self.epochs,
            warmup_epochs=self.warmup_epochs,
            warmup_start_lr=self.warmup_start_lr * scale,
            policy=self.lr_policy,
            cosine_end_lr=self.cosine_end_lr * scale,
            steps=self.lr_steps,
            lrs=self.lr_multipliers,
        )


def compile_model(model: keras.Model, recipe: RecipeConfig, steps_per_epoch: int):
    """Compiles ``model`` with the recipe's optimizer, loss and metrics. Call under the strategy scope.

    Returns:
        the (unwrapped) optimizer.
    """
    opt = optimizer.build_optimizer(
        model,
        recipe.learning_rate(steps_per_epoch),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
        weight_decay_mode=recipe.weight_decay_mode,
        clipnorm=recipe.clipnorm,
    )
    model.compile(
        optimizer=opt,
        loss=losses.build_loss(recipe.multi_label),
        metrics=metrics.build_train_metrics(recipe.num_classes, recipe.multi_label),
        jit_compile=recipe.jit_compile,
    )
    return opt


def load_init_weights(
    model: keras.Model,
    path: str,
    skip_head: bool | str = "auto",
    head_layer_names: tuple = HEAD_LAYER_NAMES,
) -> list:
    """Loads a Keras ``.weights.h5`` (e.g. converted PySlowFast weights) for fine-tuning.

    Args:
        model: built model with the same architecture as the file, up to the head.
        path: ``.weights.h5`` file.
        skip_head: ``True`` never loads the head layers, ``False`` loads everything (strict),
            ``"auto"`` loads everything when the shapes match and skips the head otherwise
            (the usual case: a 400-class Kinetics file fine-tuned to ``--num_classes``).
        head_layer_names: names of the classifier layers that may be skipped.

    Returns:
        list of the layer names that were skipped.
    """
    if skip_head not in (True, False, "auto"):
        raise ValueError(f"`skip_head` must be True, False or 'auto'. Received: {skip_head!r}")
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"Expected a Keras `.weights.h5` file. Received: path={path}")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Weights file not found. Received: path={path!r}")
    heads = [layer for layer in compat.flatten_layers(model) if layer.name in head_layer_names]

    def load(objects_to_skip=None):
        with warnings.catch_warnings():
            # Keras warns about the functional graph's bookkeeping container, which holds no
            # weights of its own (the tests check that every other layer is loaded).
            warnings.filterwarnings("ignore", message="Skipping nested container")
            compat.load_weights_only(model, path, objects_to_skip=objects_to_skip)

    def load_skipping_heads():
        load(heads)
        return [layer.name for layer in heads]

    if skip_head is True:
        return load_skipping_heads()
    try:
        load()
        return []
    except ValueError as error:
        if skip_head is False or not heads:
            raise
        logging.info("Head mismatch (%s); loading everything but %s.", error, head_layer_names)
    return load_skipping_heads()


class NonFiniteError(RuntimeError):
    """Training diverged: a non-finite loss or non-finite weights (nothing is saved as final)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteError` at the first batch whose loss is NaN or infinite.

    Keras's ``TerminateOnNaN`` only sets ``stop_training``: ``fit`` then returns normally and the
    diverged weights would be saved as final. Placed first among the callbacks, so that no
    checkpoint or backup of the diverged state is written by the same batch or epoch.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.all(np.isfinite(np.asarray(loss, dtype=np.float64))):
            raise NonFiniteError(
                f"Training loss became {float(np.ravel(loss)[0])} at epoch {self._epoch + 1}, batch "
                f"{batch + 1}; stopped, and no final weights were written. Check the labels and "
                "lower --base_lr (or set --clipnorm)."
            )


def non_finite_weights(model: keras.Model) -> list:
    """Paths of the model's variables that hold a NaN or an infinity."""
    return [
        variable.path
        for variable in model.weights
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable)))
    ]


def build_with_clip_spec(build, spec: clip_spec.ClipSpec) -> keras.Model:
    """``build(clip_spec=spec.to_dict())``: the model carries the clip spec it is trained with
    (saved in ``model.keras`` and ``final.clip_spec.json``). A model whose frames per pathway are
    not the data's is a one-line ``ValueError`` naming the flags to fix."""
    try:
        return build(clip_spec=spec.clip_spec.to_dict())
    except ValueError as error:
        if "`clip_spec` must give" not in str(error):  # models.common.presets.check_clip_spec
            raise
        model = build(clip_spec=None)
        got = {k: model.input[k].shape[1] for k in model.pathways}
        raise ValueError(
            "Model and data disagree on frames per pathway; fix --data_overrides/--model_overrides."
            f" Received: model={got}, data={spec.frames_per_pathway()}"
        ) from error


def save_final(model: keras.Model, model_dir: str) -> dict:
    """Writes ``final.weights.h5``, its clip spec sidecar ``final.clip_spec.json`` (when the model
    carries one) and ``model.keras`` atomically, refusing non-finite weights.

    Each file is written next to its target and renamed over it, so a kill leaves the previous
    complete file. Raises `NonFiniteError` (and writes nothing) if any weight is NaN or infinite.

    Returns:
        dict of the written paths (``model.keras`` missing if the model cannot be serialised).
    """
    bad = non_finite_weights(model)
    if bad:
        raise NonFiniteError(
            f"{len(bad)} of {len(model.weights)} weights are NaN or infinite (first: {bad[0]}); "
            f"final weights were not written to {model_dir}."
        )
    paths = {"weights": os.path.join(model_dir, "final.weights.h5")}
    with fileio.atomic_path(paths["weights"]) as tmp:
        model.save_weights(tmp, overwrite=True)
    spec = clip_spec.from_model(model)
    if spec is not None:  # final.clip_spec.json: export.py --weights finds it (sidecar)
        paths["clip_spec"] = spec.save(clip_spec.sidecar_path(paths["weights"]))
    model_file = os.path.join(model_dir, "model.keras")
    try:
        # The whole model (config + weights) for export.py --model_file, tiny configs included.
        with fileio.atomic_path(model_file) as tmp:
            model.save(tmp, overwrite=True)
        paths["model"] = model_file
    except (TypeError, ValueError, NotImplementedError) as error:
        # Never lose a finished run to a serialization problem: the weights are saved above.
        logging.warning("Could not save model.keras (%s); use final.weights.h5.", error)
    return paths


class ChiefBackupAndRestore(compat.BackupAndRestore):
    """``BackupAndRestore`` for multi-worker runs: every worker restores, only the chief writes.

    Keras's callback is not worker-aware; with a shared ``model_dir`` several workers would
    overwrite one file. Workers hold identical (all-reduced) weights, so one writer is enough.
    """

    def __init__(self, backup_dir, is_chief=True, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.is_chief = is_chief

    def save_backup(self):
        if self.is_chief:
            super().save_backup()

    def on_train_end(self, logs=None):
        if self.is_chief:
            super().on_train_end(logs)


class TrainStateLogger(keras.callbacks.Callback):
    """Appends ``{"event", "epoch", "step", "learning_rate"}`` lines to ``train_state.jsonl``.

    Placed after ``BackupAndRestore`` so that ``train_begin`` shows the restored epoch and step
    (resume tests and humans read it). Also adds ``learning_rate`` to the epoch logs, so it shows
    up in TensorBoard and ``history.csv``.
    """

    def __init__(self, path, write=True):
        super().__init__()
        self.path = path
        self.write = write

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _lr(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def _log(self, **record):
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def on_train_begin(self, logs=None):
        epoch = compat.initial_epoch(self.model)
        self._log(event="train_begin", epoch=epoch, step=self._step(), learning_rate=self._lr())
        if epoch:
            logging.info("Resumed from epoch %d, step %d.", epoch, self._step())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._lr()
        self._log(event="epoch_end", epoch=epoch + 1, step=self._step(), learning_rate=self._lr())


class PreciseBNCallback(keras.callbacks.Callback):
    """Recomputes BN statistics at the last batch of every ``period``-th epoch.

    The last batch (not ``on_epoch_end``) so that ``fit``'s validation and the checkpoint callbacks
    that follow already see the precise statistics, as in PySlowFast.
    """

    def __init__(self, dataset, num_batches, steps_per_epoch, period=1):
        super().__init__()
        self.dataset = dataset
        self.num_batches = num_batches
        self.steps_per_epoch = steps_per_epoch
        self.period = period
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.steps_per_epoch - 1 and (self._epoch + 1) % self.period == 0:
            precise_bn.update_bn_stats(self.model, self.dataset, self.num_batches)


class StepProgressLogger(keras.callbacks.Callback):
    """Prints a plain progress line every ``interval`` seconds during an epoch.

    ``fit(verbose=2)`` prints one line per epoch, and ``verbose=1`` redraws a bar with ``\\r``
    that turns into one long line in a log file. This prints ordinary lines (a terminal, a pipe
    and a log file show the same): the step, the epoch's running loss and metrics, the seconds per
    step and the time left in the epoch. The first step of a run is printed at once with its
    time, which includes building and (with ``jit_compile``) compiling the train step.

    Args:
        interval: float, seconds between lines (the first and last step of each epoch always print).
        steps_per_epoch: int, steps in an epoch.
        epochs: int, epochs of the run.
        clock: callable returning seconds (tests pass a fake clock).
        write: callable taking one line (default: print to stdout, flushed).
    """

    def __init__(self, interval, steps_per_epoch, epochs, clock=None, write=None):
        super().__init__()
        self.interval = float(interval)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self._clock = clock or time.perf_counter
        self._write = write or (lambda line: print(line, flush=True))
        self._epoch = 0
        self._first_step_done = False

    def on_train_begin(self, logs=None):
        self._run_start = self._clock()
        self._write(f"training: {self.epochs} epochs x {self.steps_per_epoch} steps; the first "
                    "step also builds (and with --jit_compile compiles) the train step")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._clock()
        self._last_line = self._epoch_start
        self._timed_steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = self._clock()

    def on_train_batch_end(self, batch, logs=None):
        now = self._clock()
        step = batch + 1
        if not self._first_step_done:
            # Seconds per step are timed after the one-off build/compile step.
            self._first_step_done = True
            self._timed_from, self._timed_steps = now, 0
            self._print(step, logs, f"first step {now - self._run_start:.1f} s")
            self._last_line = now
            return
        if batch == 0:
            self._timed_from, self._timed_steps = self._step_start, 0
        self._timed_steps += 1
        if now - self._last_line < self.interval and step < self.steps_per_epoch:
            return
        per_step = (now - self._timed_from) / self._timed_steps
        left = per_step * (self.steps_per_epoch - step)
        self._print(step, logs, f"{per_step:.2f} s/step, epoch left {left:.0f} s")
        self._last_line = now

    def _print(self, step, logs, timing):
        values = [f"{key} {float(np.ravel(value)[0]):.4f}" for key, value in (logs or {}).items()
                  if np.size(value) == 1]
        self._write(f"epoch {self._epoch + 1}/{self.epochs} step {step}/{self.steps_per_epoch}: "
                    + ", ".join(values + [timing]))


def _tensorboard_available():
    # tf.summary writes need the `tensorboard` package, which TF 2.21 no longer pulls in.
    return importlib.util.find_spec("tensorboard") is not None


def build_callbacks(
    model_dir: str,
    steps_per_epoch: int,
    recipe: RecipeConfig,
    precise_bn_dataset: tf.data.Dataset | None = None,
    tensorboard: bool = True,
) -> list:
    """Backup/restore, periodic checkpoints, precise BN, LR/state log, CSV and TensorBoard logs.

    Files (chief only): ``backup/`` (resume state), ``checkpoints/epoch_NNN.weights.h5``,
    ``train_state.jsonl``, ``history.csv``, ``logs/`` (TensorBoard).
    """
    chief = strategy.is_chief()
    # Non-chief workers write their logs and checkpoints to a throwaway directory.
    write_dir = model_dir if chief else tempfile.mkdtemp(prefix=f"{strategy.task_id()}_")
    os.makedirs(write_dir, exist_ok=True)
    # First: a diverged batch raises before any checkpoint callback can save its state.
    callbacks = [StopOnNonFiniteLoss()]
    if recipe.precise_bn_batches > 0 and precise_bn_dataset is not None:
        callbacks.append(
            PreciseBNCallback(
                precise_bn_dataset,
                recipe.precise_bn_batches,
                steps_per_epoch,
                recipe.checkpoint_period,
            )
        )
    callbacks += [
        # Kept after training (delete_checkpoint=False): re-running a finished job is a no-op.
        # double_checkpoint: a kill while writing leaves the previous state to fall back on.
        ChiefBackupAndRestore(
            os.path.join(model_dir, "backup"),
            is_chief=chief,
            double_checkpoint=True,
            delete_checkpoint=False,
        ),
        TrainStateLogger(os.path.join(write_dir, "train_state.jsonl"), write=chief),
        keras.callbacks.ModelCheckpoint(
            os.path.join(write_dir, "checkpoints", "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True,
            save_freq=recipe.checkpoint_period * steps_per_epoch,
        ),
        keras.callbacks.CSVLogger(os.path.join(write_dir, "history.csv"), append=True),
    ]
    if tensorboard and not _tensorboard_available():
        logging.warning("`tensorboard` is not installed: no TensorBoard logs (pip install tensorboard).")
    elif tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(write_dir, "logs"), update_freq="epoch")
        )
    return callbacks


def _build_before_distributed_fit(model, recipe):
    """Works around two Keras 3.15 ``fit`` bugs under tf.distribute strategies.

    1. Builds optimizer, loss and metric state from specs before a distributed ``fit``.

    Keras 3.15 ``fit`` under a strategy first takes a real batch and calls
    ``strategy.reduce("MEAN", batch)`` to build its state symbolically. With
    ``MultiWorkerMirroredStrategy`` and dict inputs (``{"slow", "fast"}``) that reduce fails
    ("Attempt to convert a value ({'slow': PerReplica...}) ... to a Tensor"). Building from the
    model's input specs instead gives the same state, after which that step is skipped.
    2. Multi-worker only: scalar step logs cannot be reduced (see below).
    """
    if compat.model_strategy(model) is None:
        return
    label_shape = (None, recipe.num_classes) if recipe.multi_label else (None,)
    label = keras.KerasTensor(label_shape, "float32" if recipe.multi_label else "int32")
    compat.build_from_specs(model, (model.input, label))

    strat = model.distribute_strategy
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy) and (
        compat.in_multi_worker_mode(strat)
    ):
        # Keras 3.15 reduces the step logs across workers with strategy.reduce("MEAN", v, axis=0),
        # which fails on scalar logs ("Invalid reduction dimension 0 for input with 0
        # dimensions", tensorflow/tensorflow#72388). Returning them as [1] vectors makes that
        # reduce the mean over replicas, a scalar again.
        def as_vectors(step_fn):
            def step(data):
                return {k: keras.ops.reshape(v, (1,)) for k, v in step_fn(data).items()}

            return step

        model.train_step = as_vectors(model.train_step)
        model.test_step = as_vectors(model.test_step)


def fit(
    model: keras.Model,
    train_dataset: tf.data.Dataset,
    recipe: RecipeConfig,
    model_dir: str,
    steps_per_epoch: int,
    val_dataset: tf.data.Dataset | None = None,
    val_steps: int | None = None,
    precise_bn_dataset: tf.data.Dataset | None = None,
    tensorboard: bool = True,
    verbose: int | str = "auto",
    progress_interval: float = 0.0,
):
    """Trains a compiled model, resuming from ``model_dir/backup`` if present.

    ``progress_interval > 0`` adds a `StepProgressLogger` (plain lines within each epoch; use it
    with ``verbose=2``, whose per-epoch line then follows them).

    Saves ``model_dir/final.weights.h5`` and ``model_dir/model.keras`` at the end (chief only,
    atomically, never non-finite weights: see `save_final`). A NaN/infinite loss stops training
    with `NonFiniteError`.

    Returns:
        the Keras ``History``.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"`steps_per_epoch` must be > 0. Received: {steps_per_epoch}")
    callbacks = build_callbacks(
        model_dir, steps_per_epoch, recipe, precise_bn_dataset or train_dataset, tensorboard
    )
    if progress_interval > 0 and strategy.is_chief():
        callbacks.append(StepProgressLogger(progress_interval, steps_per_epoch, recipe.epochs))
    _build_before_distributed_fit(model, recipe)
    history = model.fit(
        train_dataset,
        epochs=recipe.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_dataset,
        validation_steps=val_steps,
        callbacks=callbacks,
        shuffle=False,  # tf.data pipelines shuffle themselves.
        verbose=verbose,
    )
    if strategy.is_chief():
        save_final(model, model_dir)
    return history
