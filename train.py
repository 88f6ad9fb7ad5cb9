r"""Train and evaluate SlowFast-family video classifiers (PySlowFast recipe) with Keras 3.

Examples::

    # Kinetics-400 SlowFast R50 8x8 on one machine with all its GPUs:
    python train.py --flagfile=configs/k400_slowfast_r50_8x8.flags --model_dir=/tmp/sf8x8 \
        --train_file_pattern='/data/k400/train-*' --test_file_pattern='/data/k400/val-*'

    # Multi-view evaluation (10 clips x 3 crops) of a trained or converted model:
    python train.py --flagfile=configs/k400_slowfast_r50_8x8.flags --mode=eval \
        --model_dir=/tmp/sf8x8 --eval_weights=/tmp/sf8x8/final.weights.h5

    # Smoke test without data: random clips of the right shapes.
    python train.py --model=slowfast_r50_8x8 --model_overrides='{"depth": 18, "width": 8}' \
        --fake_data --num_classes=4 --epochs=1 --steps_per_epoch=2 --batch_size=2 --model_dir=/tmp/x

Modes: ``train`` (resumes automatically from ``model_dir/backup`` after a kill), ``eval``
(multi-view test: top-1/top-5 or mAP + per-class JSON/CSV in ``model_dir``), ``train_and_eval``.
Strategies: ``auto`` (TPU if configured, else all GPUs, else CPU), ``default``, ``one_device``,
``mirrored``, ``multi_worker`` (``TF_CONFIG``), ``tpu`` (``--tpu`` / ``TPU_NAME``).
"""

import json
import os
import re
import sys

from absl import app, flags, logging

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from slowfast_tf.utils import fileio, tf_startup  # noqa: E402

tf_startup.prefer_onednn()  # Before TF is imported: oneDNN CPU kernels (see tf_startup).
tf_startup.quiet_tf_startup()  # Before TF is imported: no duplicated start-up/cuInit noise.

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from slowfast_tf.training import devices, evaluation, trainer  # noqa: E402
from slowfast_tf.training import strategy as strategy_lib  # noqa: E402

FLAGS = flags.FLAGS
_FLAGS_BEFORE = set(FLAGS)

flags.DEFINE_enum("mode", "train", ["train", "eval", "train_and_eval"], "What to run.")
flags.DEFINE_string("model_dir", None, "Checkpoints, logs, resolved flags and reports go here.")
# Model.
flags.DEFINE_string("model", "slowfast_r50_8x8", "Model preset (slowfast_tf.models.list_presets()).")
flags.DEFINE_string("model_overrides", "{}", "JSON dict of build_model overrides, e.g. tiny sizes.")
flags.DEFINE_integer("num_classes", 400, "Classifier width.")
flags.DEFINE_float("dropout", 0.5, "Dropout before the projection (MODEL.DROPOUT_RATE).")
flags.DEFINE_bool("multi_label", False, "Multi-hot labels: sigmoid/BCE, mAP, max ensemble.")
flags.DEFINE_string("init_weights", None, "Keras .weights.h5 to fine-tune from (e.g. converted).")
flags.DEFINE_enum("skip_head", "auto", ["auto", "true", "false"],
                  "Skip head_projection when loading --init_weights ('auto': if shapes differ).")
# Data.
flags.DEFINE_string("data_preset", None, "slowfast_tf.data preset; default: the one named like "
                    "--model's clip spec (slowfast_r50_8x8 -> slowfast_8x8).")
flags.DEFINE_string("data_overrides", "{}", "JSON dict of DataConfig overrides.")
flags.DEFINE_string("train_file_pattern", None, "TFRecord glob of training SequenceExamples.")
flags.DEFINE_string("val_file_pattern", None, "Optional in-training validation (1 view/video).")
flags.DEFINE_string("test_file_pattern", None, "Multi-view evaluation records.")
flags.DEFINE_string("class_names", None, "Optional text file, one class name per line.")
flags.DEFINE_bool("fake_data", False, "Random clips of the right shapes instead of records.")
flags.DEFINE_integer("batch_size", 8, "Clips per replica per step (PySlowFast: 8 x 8 GPUs).")
flags.DEFINE_integer("eval_batch_size", 8, "Views per step in evaluation.")
flags.DEFINE_integer("shuffle_buffer", 64, "Records in the training shuffle buffer.")
# Schedule and recipe.
flags.DEFINE_integer("epochs", 196, "SOLVER.MAX_EPOCH.")
flags.DEFINE_integer("steps_per_epoch", None, "Optimizer steps per epoch; default: count records.")
flags.DEFINE_integer("num_train_examples", None, "Videos per epoch (instead of counting records).")
flags.DEFINE_float("base_lr", 0.1, "LR for --base_batch_size clips (linear scaling rule).")
flags.DEFINE_integer("base_batch_size", 64, "Batch size --base_lr refers to.")
flags.DEFINE_enum("lr_policy", "cosine", ["cosine", "steps_with_relative_lrs"], "LR policy.")
flags.DEFINE_float("warmup_epochs", 34.0, "Linear warmup epochs.")
flags.DEFINE_float("warmup_start_lr", 0.01, "LR at step 0 for --base_batch_size clips.")
flags.DEFINE_float("cosine_end_lr", 0.0, "Final cosine LR.")
flags.DEFINE_list("lr_steps", [], "Steps policy: epochs where each step starts (first is 0).")
flags.DEFINE_list("lr_multipliers", [], "Steps policy: LR multiplier per step.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_bool("nesterov", True, "Nesterov momentum.")
flags.DEFINE_float("weight_decay", 1e-4, "Weight decay of all non-BN parameters.")
flags.DEFINE_enum("weight_decay_mode", "coupled", ["coupled", "decoupled"],
                  "'coupled' = torch L2 added to the gradient (faithful); 'decoupled' = Keras.")
flags.DEFINE_float("clipnorm", None, "Global gradient-norm clipping (off in PySlowFast).")
flags.DEFINE_integer("precise_bn_batches", 0, "Precise-BN batches before each checkpoint; 0=off.")
flags.DEFINE_integer("checkpoint_period", 1, "Epochs between kept checkpoints.")
flags.DEFINE_integer("val_steps", None, "Cap on validation batches.")
# Evaluation.
flags.DEFINE_string("eval_weights", None, "Weights to evaluate; default model_dir/final.weights.h5.")
flags.DEFINE_integer("eval_num_batches", None, "Cap on evaluation batches (quick checks).")
flags.DEFINE_enum("ensemble", None, ["mean", "sum", "max"], "View ensemble; default mean / max.")
# AVA detection (detector presets); defaults: convert-ava's files next to the test shards.
flags.DEFINE_string("ava_groundtruth", None, "Ground-truth CSV; default {split}_groundtruth.csv.")
flags.DEFINE_string("ava_label_map", None, "Evaluated classes pbtxt; default label_map.pbtxt.")
flags.DEFINE_string("ava_exclusions", None, "Exclusions CSV; default {split}_exclusions.csv.")
# Systems.
flags.DEFINE_enum("strategy", "auto", list(strategy_lib.STRATEGIES),
                  "Distribution strategy; 'auto': TPU if configured, >1 GPU mirrored, 1 GPU, CPU.")
flags.DEFINE_string("tpu", None, "TPU address (name, grpc://..., 'local'); default $TPU_NAME.")
flags.DEFINE_bool("require_gpu", False, "Exit with an error (2) instead of training on the CPU.")
flags.DEFINE_enum("precision", "auto", list(strategy_lib.PRECISIONS),
                  "Keras dtype policy; 'auto': bfloat16 on TPU, float16 on GPUs cc>=7.0, else float32.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
flags.DEFINE_integer("seed", 0, "Random seed (RNG_SEED).")
flags.DEFINE_bool("tensorboard", True, "Write TensorBoard logs to model_dir/logs.")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"],
                  "Keras fit verbosity: 1 = a bar redrawn in place, 2 = one line per epoch.")
flags.DEFINE_float("progress_interval", 0.0, "Also print a plain line (step, loss, s/step) every "
                   "this many seconds within an epoch; 0 = off. Use with --verbose=2.")
_TRAIN_FLAGS = sorted(set(FLAGS) - _FLAGS_BEFORE)


def _json_flag(name):
    try:
        value = json.loads(getattr(FLAGS, name))
    except json.JSONDecodeError as error:
        raise ValueError(f"--{name} must be a JSON dict. Received: {getattr(FLAGS, name)!r}") from error
    if not isinstance(value, dict):
        raise ValueError(f"--{name} must be a JSON dict. Received: {value!r}")
    return value


def write_resolved_flags(model_dir, extra):
    """model_dir/flags.txt (a reusable --flagfile) and flags.json (resolved values + configs)."""
    os.makedirs(model_dir, exist_ok=True)
    module_flags = [FLAGS[name] for name in _TRAIN_FLAGS]
    with fileio.atomic_open(os.path.join(model_dir, "flags.txt"), "w") as f:
        f.write("\n".join(flag.serialize() for flag in module_flags if flag.value is not None))
        f.write("\n")
    resolved = {flag.name: flag.value for flag in module_flags}
    with fileio.atomic_open(os.path.join(model_dir, "flags.json"), "w") as f:
        json.dump({"flags": resolved, **extra}, f, indent=2, default=str)


def build_data_config():
    from slowfast_tf.data import get_data_config

    overrides = {"num_classes": FLAGS.num_classes, "multi_label": FLAGS.multi_label}
    overrides.update(_json_flag("data_overrides"))
    return get_data_config(FLAGS.data_preset or FLAGS.model, **overrides)


def build_classifier(data_config):
    from slowfast_tf.models import build_model

    overrides = {"dropout": FLAGS.dropout, **_json_flag("model_overrides")}
    if FLAGS.multi_label:
        overrides.setdefault("activation", "sigmoid")
    overrides.setdefault("train_crop_size", data_config.train_crop)
    # Both layers count frames the same way (the decoded clip = the fast pathway's T).
    overrides.setdefault("num_frames", data_config.num_frames)
    return trainer.build_with_clip_spec(
        lambda **spec: build_model(FLAGS.model, num_classes=FLAGS.num_classes, **overrides, **spec),
        data_config,
    )


def fake_dataset(data_config, mode, batch_size, num_videos=8):
    """Random normalised clips with the pipeline's element structure (smoke tests, benchmarks)."""
    frames = data_config.frames_per_pathway()
    crop = data_config.train_crop if mode == "train" else data_config.test_crop
    rng = np.random.default_rng(FLAGS.seed)
    views = data_config.num_views if mode == "test" else 1
    n = num_videos * views
    inputs = {k: rng.normal(size=(n, t, crop, crop, 3)).astype("float32") for k, t in frames.items()}
    classes = rng.integers(0, data_config.num_classes, num_videos).repeat(views)
    labels = (np.eye(data_config.num_classes, dtype="float32")[classes] if data_config.multi_label
              else classes.astype("int32"))
    if mode == "test":
        ds = tf.data.Dataset.from_tensor_slices((inputs, labels, np.arange(n) // views))
        return ds.batch(batch_size)
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if mode == "train":
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=mode == "train").prefetch(2)


def build_datasets(strategy, data_config, mode):
    """Returns the dataset for ``mode`` ("train", "val" or "test") or None if not configured."""
    replicas = strategy.num_replicas_in_sync
    if FLAGS.fake_data:
        if mode == "val" and not FLAGS.val_steps:
            return None  # Fake validation only on request (--val_steps): it doubles tracing time.
        size = FLAGS.eval_batch_size if mode == "test" else FLAGS.batch_size * replicas
        return fake_dataset(data_config, mode, size)
    pattern = {"train": FLAGS.train_file_pattern, "val": FLAGS.val_file_pattern,
               "test": FLAGS.test_file_pattern}[mode]
    if not pattern:
        return None
    from slowfast_tf.data import build_dataset, make_distributed_dataset

    kwargs = {"seed": FLAGS.seed} if mode == "train" else {}
    if mode == "train":
        kwargs["shuffle_buffer"] = FLAGS.shuffle_buffer
    if mode == "test":
        # Evaluation runs on one device in the cross-replica context (see evaluation.py).
        return build_dataset(pattern, data_config, "test", FLAGS.eval_batch_size)
    if replicas > 1 or FLAGS.strategy == "multi_worker":
        return make_distributed_dataset(strategy, pattern, data_config, mode,
                                        FLAGS.batch_size * replicas, **kwargs)
    return build_dataset(pattern, data_config, mode, FLAGS.batch_size, **kwargs)


def count_records(pattern):
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise ValueError(f"No files match. Received: train_file_pattern={pattern!r}")
    logging.info("Counting records in %d files (pass --num_train_examples to skip).", len(files))
    from slowfast_tf.data.records import count_records as count_readable

    return count_readable(sorted(files))  # Survives (and names) a truncated shard.


def resolve_steps_per_epoch(global_batch_size):
    if FLAGS.steps_per_epoch:
        return FLAGS.steps_per_epoch
    if FLAGS.fake_data:
        raise ValueError("--fake_data needs --steps_per_epoch.")
    num = FLAGS.num_train_examples or count_records(FLAGS.train_file_pattern)
    # drop_remainder=True batches: the last partial batch of an epoch is not a step.
    return max(1, num // global_batch_size)


def recipe_from_flags(global_batch_size):
    return trainer.RecipeConfig(
        num_classes=FLAGS.num_classes,
        multi_label=FLAGS.multi_label,
        epochs=FLAGS.epochs,
        base_lr=FLAGS.base_lr,
        base_batch_size=FLAGS.base_batch_size,
        global_batch_size=global_batch_size,
        lr_policy=FLAGS.lr_policy,
        warmup_epochs=FLAGS.warmup_epochs,
        warmup_start_lr=FLAGS.warmup_start_lr,
        cosine_end_lr=FLAGS.cosine_end_lr,
        lr_steps=tuple(float(s) for s in FLAGS.lr_steps),
        lr_multipliers=tuple(float(v) for v in FLAGS.lr_multipliers),
        momentum=FLAGS.momentum,
        nesterov=FLAGS.nesterov,
        weight_decay=FLAGS.weight_decay,
        weight_decay_mode=FLAGS.weight_decay_mode,
        clipnorm=FLAGS.clipnorm,
        precise_bn_batches=FLAGS.precise_bn_batches,
        checkpoint_period=FLAGS.checkpoint_period,
        jit_compile=FLAGS.jit_compile,
    )


def run_train(strategy, data_config):
    global_batch_size = FLAGS.batch_size * strategy.num_replicas_in_sync
    if not FLAGS.fake_data and not FLAGS.train_file_pattern:
        raise ValueError("Training needs --train_file_pattern (or --fake_data).")
    steps_per_epoch = resolve_steps_per_epoch(global_batch_size)
    recipe = recipe_from_flags(global_batch_size)
    if strategy_lib.is_chief():
        write_resolved_flags(FLAGS.model_dir, {
            "data_config": data_config.to_dict(),
            "recipe": recipe.__dict__,
            "steps_per_epoch": steps_per_epoch,
            "num_replicas": strategy.num_replicas_in_sync,
        })
    with strategy.scope():
        model = build_classifier(data_config)
        if FLAGS.init_weights:
            skip = {"auto": "auto", "true": True, "false": False}[FLAGS.skip_head]
            skipped = trainer.load_init_weights(model, FLAGS.init_weights, skip_head=skip)
            logging.info("Initialised from %s (skipped: %s).", FLAGS.init_weights, skipped)
        trainer.compile_model(model, recipe, steps_per_epoch)
    logging.info("%s: %d parameters, %d steps/epoch, global batch %d, peak LR %.5f.",
                 FLAGS.model, model.count_params(), steps_per_epoch, global_batch_size,
                 recipe.learning_rate(steps_per_epoch).base_lr)
    train_ds = build_datasets(strategy, data_config, "train")
    val_ds = build_datasets(strategy, data_config, "val")
    precise_bn_ds = None
    if FLAGS.precise_bn_batches and not FLAGS.fake_data:
        from slowfast_tf.data import build_dataset

        # Per-replica batches, not distributed: BN statistics of --batch_size clips, as each GPU
        # computes them in PySlowFast; a different seed from the training stream.
        precise_bn_ds = build_dataset(FLAGS.train_file_pattern, data_config, "train",
                                      FLAGS.batch_size, seed=FLAGS.seed + 1)
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    trainer.fit(model, train_ds, recipe, FLAGS.model_dir, steps_per_epoch, val_dataset=val_ds,
                val_steps=FLAGS.val_steps, precise_bn_dataset=precise_bn_ds,
                tensorboard=FLAGS.tensorboard, verbose=verbose,
                progress_interval=FLAGS.progress_interval)
    return model


def run_eval(strategy, data_config, model=None):
    weights = FLAGS.eval_weights or os.path.join(FLAGS.model_dir, "final.weights.h5")
    if model is None and not tf.io.gfile.exists(weights):  # Before any data or model work.
        raise FileNotFoundError(f"No weights to evaluate at {weights} (train first, or pass "
                                "--eval_weights).")
    test_ds = build_datasets(strategy, data_config, "test")
    if test_ds is None:
        raise ValueError("Evaluation needs --test_file_pattern (or --fake_data).")
    with strategy.scope():
        if model is None:
            model = build_classifier(data_config)
            trainer.load_init_weights(model, weights, skip_head=False)
        eval_model = model.build_eval_model()
    class_names = None
    if FLAGS.class_names:
        with open(FLAGS.class_names) as f:
            class_names = [line.strip() for line in f if line.strip()]
    result = evaluation.evaluate_multiview(
        eval_model, test_ds, multi_label=FLAGS.multi_label, method=FLAGS.ensemble,
        class_names=class_names, output_dir=FLAGS.model_dir if strategy_lib.is_chief() else None,
        num_batches=FLAGS.eval_num_batches,
    )
    logging.info("Multi-view evaluation: %s", json.dumps(result["summary"]))
    print(json.dumps(result["summary"]))
    return result


def run_detector(strategy, mode):
    """AVA detectors (slowfast_tf.training.detection): masked BCE, frame-mAP evaluation."""
    from slowfast_tf.training import detection

    data_config = detection.build_data_config(FLAGS.model, FLAGS.data_preset, FLAGS.num_classes,
                                              _json_flag("data_overrides"))
    overrides = {"dropout": FLAGS.dropout, **_json_flag("model_overrides")}
    model = None
    if mode in ("train", "train_and_eval"):
        if not FLAGS.train_file_pattern:
            raise ValueError("Training needs --train_file_pattern.")
        global_batch_size = FLAGS.batch_size * strategy.num_replicas_in_sync
        steps_per_epoch = FLAGS.steps_per_epoch or max(
            1, (FLAGS.num_train_examples or 0) // global_batch_size)
        if not FLAGS.steps_per_epoch and not FLAGS.num_train_examples:
            raise ValueError("Detectors need --steps_per_epoch or --num_train_examples (keyframes).")
        recipe = recipe_from_flags(global_batch_size)
        if strategy_lib.is_chief():
            write_resolved_flags(FLAGS.model_dir, {"ava_data_config": data_config.__dict__,
                                                   "recipe": recipe.__dict__,
                                                   "steps_per_epoch": steps_per_epoch})
        with strategy.scope():
            model = detection.build_detector(FLAGS.model, FLAGS.num_classes, data_config, overrides)
            if FLAGS.init_weights:
                skip = {"auto": "auto", "true": True, "false": False}[FLAGS.skip_head]
                skipped = trainer.load_init_weights(model, FLAGS.init_weights, skip_head=skip)
                logging.info("Initialised from %s (skipped: %s).", FLAGS.init_weights, skipped)
            detection.compile_detector(model, recipe, steps_per_epoch)
        logging.info("%s: %d parameters, %d steps/epoch.", FLAGS.model, model.count_params(),
                     steps_per_epoch)
        train_ds = detection.build_dataset(FLAGS.train_file_pattern, data_config, "train",
                                           global_batch_size, seed=FLAGS.seed,
                                           shuffle_buffer=FLAGS.shuffle_buffer)
        verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
        detection.fit(model, train_ds, recipe, FLAGS.model_dir, steps_per_epoch,
                      tensorboard=FLAGS.tensorboard, verbose=verbose)
    if mode in ("eval", "train_and_eval"):
        weights = FLAGS.eval_weights or os.path.join(FLAGS.model_dir, "final.weights.h5")
        if model is None and not tf.io.gfile.exists(weights):
            raise FileNotFoundError(f"No weights to evaluate at {weights} (train first, or pass "
                                    "--eval_weights).")
        if not FLAGS.test_file_pattern:
            raise ValueError("Evaluation needs --test_file_pattern.")
        files = detection.default_eval_files(FLAGS.test_file_pattern, FLAGS.ava_groundtruth,
                                             FLAGS.ava_label_map, FLAGS.ava_exclusions)
        if model is None:
            model = detection.build_detector(FLAGS.model, FLAGS.num_classes, data_config, overrides)
            trainer.load_init_weights(model, weights, skip_head=False)
        test_ds = detection.build_dataset(FLAGS.test_file_pattern, data_config, "test",
                                          FLAGS.eval_batch_size)
        result = detection.evaluate(model.build_eval_model(), test_ds, *files,
                                    output_dir=FLAGS.model_dir if strategy_lib.is_chief() else None,
                                    num_batches=FLAGS.eval_num_batches)
        print(json.dumps(result["metrics"]))
        print(json.dumps(result["summary"]))


def main(argv):
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    keras.utils.set_random_seed(FLAGS.seed)
    try:
        strategy = strategy_lib.build_strategy(FLAGS.strategy, FLAGS.tpu, FLAGS.require_gpu)
    except strategy_lib.DeviceError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    precision = strategy_lib.set_precision_policy(FLAGS.precision, strategy)
    batch = FLAGS.eval_batch_size if FLAGS.mode == "eval" else FLAGS.batch_size  # per replica
    devices.log_run_context("train.py", strategy, precision=precision, per_replica_batch_size=batch)
    from slowfast_tf.training.detection import is_detector

    if is_detector(FLAGS.model):
        os.makedirs(FLAGS.model_dir, exist_ok=True)
        return run_detector(strategy, FLAGS.mode)
    data_config = build_data_config()
    model = None
    if FLAGS.mode in ("train", "train_and_eval"):
        model = run_train(strategy, data_config)
    if FLAGS.mode in ("eval", "train_and_eval"):
        run_eval(strategy, data_config, model)


def _label_error(error):
    """The input pipeline's label check message from an InvalidArgumentError, or None."""
    match = re.search(r"assertion failed: \[(.*? is out of range for num_classes=.*?)\]", str(error))
    return match.group(1) if match else None


def cli_main(argv):
    """``main`` with one-line errors: exit 2 for bad input, 1 for a diverged (NaN) run."""
    try:
        main(argv)
    except (ValueError, FileNotFoundError) as error:
        logging.debug("Traceback:", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except tf.errors.InvalidArgumentError as error:
        message = _label_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except trainer.NonFiniteError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(cli_main)
