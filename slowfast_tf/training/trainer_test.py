import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.training import trainer


def stand_in_model(num_classes=3, frames=4, size=8):
    """A tiny video classifier with the project's I/O contract: dict input, logits output."""
    inputs = {"slow": keras.Input((frames, size, size, 3), name="slow")}
    x = keras.layers.Conv3D(4, 3, padding="same", use_bias=False, name="conv")(inputs["slow"])
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, name="head_projection")(x)
    return keras.Model(inputs, outputs)


def stand_in_dataset(num_examples=24, batch_size=4, num_classes=3, multi_label=False, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_examples)
    # Class-dependent brightness: learnable in a few steps.
    clips = rng.normal(size=(num_examples, 4, 8, 8, 3)).astype("float32")
    clips += labels[:, None, None, None, None].astype("float32")
    y = np.eye(num_classes, dtype="float32")[labels] if multi_label else labels.astype("int32")
    ds = tf.data.Dataset.from_tensor_slices(({"slow": clips}, y))
    return ds.shuffle(num_examples, seed=seed).repeat().batch(batch_size, drop_remainder=True)


@pytest.mark.parametrize("multi_label", [False, True])
def test_fit_writes_checkpoints_logs_and_learns(tmp_path, multi_label, capsys):
    keras.utils.set_random_seed(0)
    model = stand_in_model()
    recipe = trainer.RecipeConfig(
        num_classes=3, multi_label=multi_label, epochs=3, base_lr=0.8, global_batch_size=4,
        base_batch_size=64, warmup_epochs=1, warmup_start_lr=0.08, precise_bn_batches=2,
    )
    opt = trainer.compile_model(model, recipe, steps_per_epoch=6)
    history = trainer.fit(model, stand_in_dataset(multi_label=multi_label), recipe, str(tmp_path),
                          steps_per_epoch=6, tensorboard=False, verbose=0,
                          progress_interval=1e-9)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("training: 3 epochs x 6 steps")
    assert printed[1].startswith("epoch 1/3 step 1/6: loss ") and "first step" in printed[1]
    assert printed[-1].startswith("epoch 3/3 step 6/6: loss ") and "s/step" in printed[-1]
    assert len(printed) == 1 + 18
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert int(opt.iterations.numpy()) == 18
    for name in ["final.weights.h5", "history.csv", "backup/latest.weights.h5",
                 "checkpoints/epoch_003.weights.h5"]:
        assert os.path.exists(tmp_path / name), name
    with open(tmp_path / "train_state.jsonl") as f:
        states = [json.loads(line) for line in f]
    assert [s["step"] for s in states] == [0, 6, 12, 18]
    # Linear scaling: 0.8 * 4 / 64 = 0.05 peak, warmup from 0.005.
    assert states[0]["learning_rate"] == pytest.approx(0.005)
    assert "learning_rate" in history.history


def test_step_progress_logger_prints_lines_at_the_interval():
    now = [100.0]
    lines = []
    logger = trainer.StepProgressLogger(10, steps_per_epoch=5, epochs=2, clock=lambda: now[0],
                                        write=lines.append)
    logger.on_train_begin()
    for epoch in range(2):
        logger.on_epoch_begin(epoch)
        for batch in range(5):
            logger.on_train_batch_begin(batch)
            now[0] += 40.0 if (epoch, batch) == (0, 0) else 4.0  # the first step compiles
            logger.on_train_batch_end(batch, {"loss": np.float32(1.5), "top1": 0.25,
                                              "per_class": np.zeros(3)})
    assert lines == [
        "training: 2 epochs x 5 steps; the first step also builds (and with --jit_compile "
        "compiles) the train step",
        "epoch 1/2 step 1/5: loss 1.5000, top1 0.2500, first step 40.0 s",
        "epoch 1/2 step 4/5: loss 1.5000, top1 0.2500, 4.00 s/step, epoch left 4 s",
        "epoch 1/2 step 5/5: loss 1.5000, top1 0.2500, 4.00 s/step, epoch left 0 s",
        "epoch 2/2 step 3/5: loss 1.5000, top1 0.2500, 4.00 s/step, epoch left 8 s",
        "epoch 2/2 step 5/5: loss 1.5000, top1 0.2500, 4.00 s/step, epoch left 0 s",
    ]


def test_load_init_weights_skips_a_mismatched_head(tmp_path):
    source = stand_in_model(num_classes=5)
    path = str(tmp_path / "k400.weights.h5")
    source.save_weights(path)
    target = stand_in_model(num_classes=3)
    head_before = target.get_layer("head_projection").kernel.numpy()
    skipped = trainer.load_init_weights(target, path)
    assert skipped == ["head_projection"]
    np.testing.assert_array_equal(target.get_layer("conv").kernel.numpy(),
                                  source.get_layer("conv").kernel.numpy())
    np.testing.assert_array_equal(target.get_layer("head_projection").kernel.numpy(), head_before)
    with pytest.raises(ValueError):
        trainer.load_init_weights(stand_in_model(num_classes=3), path, skip_head=False)
    same = stand_in_model(num_classes=5)
    assert trainer.load_init_weights(same, path) == []
    np.testing.assert_array_equal(same.get_layer("head_projection").kernel.numpy(),
                                  source.get_layer("head_projection").kernel.numpy())
    with pytest.raises(ValueError, match="path=model.h5"):
        trainer.load_init_weights(same, "model.h5")


def test_mixed_float16_uses_loss_scaling_and_stays_finite(tmp_path):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = stand_in_model()
        recipe = trainer.RecipeConfig(num_classes=3, epochs=1, warmup_epochs=0.5,
                                      global_batch_size=4)
        inner = trainer.compile_model(model, recipe, steps_per_epoch=3)
        history = trainer.fit(model, stand_in_dataset(), recipe, str(tmp_path), steps_per_epoch=3,
                              tensorboard=False, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.inner_optimizer is inner
    assert model.get_layer("conv").compute_dtype == "float16"
    assert model.get_layer("conv").kernel.dtype == "float32"
    assert np.isfinite(history.history["loss"][0])


def test_short_run_clamps_warmup_to_epochs():
    # README "No data yet" command: --epochs=1 with the recipe's 34 warmup epochs used to raise.
    recipe = trainer.RecipeConfig(num_classes=4, epochs=1, global_batch_size=2)
    assert recipe.warmup_epochs == 1.0
    schedule = recipe.learning_rate(steps_per_epoch=2)
    assert np.isfinite(float(schedule(1)))
    assert trainer.RecipeConfig(num_classes=4, epochs=196).warmup_epochs == 34.0


def test_nan_loss_stops_training_and_writes_no_final_weights(tmp_path):
    model = stand_in_model()
    recipe = trainer.RecipeConfig(num_classes=3, epochs=2, warmup_epochs=0, global_batch_size=4)
    trainer.compile_model(model, recipe, steps_per_epoch=3)
    clips = np.full((8, 4, 8, 8, 3), np.nan, "float32")  # what an out-of-range XLA gather feeds
    ds = tf.data.Dataset.from_tensor_slices(({"slow": clips}, np.zeros(8, "int32")))
    with pytest.raises(trainer.NonFiniteError, match="epoch 1, batch 1"):
        trainer.fit(model, ds.repeat().batch(4), recipe, str(tmp_path), steps_per_epoch=3,
                    tensorboard=False, verbose=0)
    assert not (tmp_path / "final.weights.h5").exists()
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_save_final_is_atomic_and_refuses_non_finite_weights(tmp_path, monkeypatch):
    model = stand_in_model()
    written = []
    real = trainer.fileio.atomic_path

    def spy(path):
        written.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(trainer.fileio, "atomic_path", spy)
    paths = trainer.save_final(model, str(tmp_path))
    assert written == ["final.weights.h5", "model.keras"] and set(paths) == {"weights", "model"}
    before = (tmp_path / "final.weights.h5").read_bytes()
    kernel = model.get_layer("head_projection").kernel
    kernel.assign(np.full(kernel.shape, np.inf, "float32"))
    with pytest.raises(trainer.NonFiniteError, match="1 of .* weights are NaN or infinite"):
        trainer.save_final(model, str(tmp_path))
    assert (tmp_path / "final.weights.h5").read_bytes() == before


_KILL_WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from slowfast_tf.training import trainer
from slowfast_tf.training.trainer_test import stand_in_model

model = stand_in_model()
def slow_save_weights(path, overwrite=True):
    # Half of a file, then stall: the moment a kill (OOM, pre-emption) lands mid-write.
    with open(path, "wb") as f:
        f.write(b"\x89HDF half-written")
        f.flush()
    open(sys.argv[3], "w").close()
    time.sleep(600)
model.save_weights = slow_save_weights
trainer.save_final(model, sys.argv[2])
"""


@pytest.mark.slow
def test_kill_while_overwriting_final_weights_keeps_the_old_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trainer.save_final(stand_in_model(), str(tmp_path))
    old = (tmp_path / "final.weights.h5").read_bytes()
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, repo, str(tmp_path), str(marker)],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.time() + 300
        while not marker.exists():
            assert proc.poll() is None and time.time() < deadline, "writer did not start"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert (tmp_path / "final.weights.h5").read_bytes() == old
    reloaded = stand_in_model()
    reloaded.load_weights(str(tmp_path / "final.weights.h5"))


def test_save_final_writes_the_clip_spec_sidecar(tmp_path):
    from slowfast_tf.clip_spec import ClipSpec, load_sidecar

    model = stand_in_model()
    spec = ClipSpec(num_frames=4, pathways=("slow",), train_crop=8, test_crop=8,
                    train_jitter_scales=(8, 10))
    model.clip_spec = spec.to_dict()  # what SlowFastVideoClassifier(clip_spec=...) holds
    paths = trainer.save_final(model, str(tmp_path))
    assert paths["clip_spec"] == str(tmp_path / "final.clip_spec.json")
    assert load_sidecar(paths["weights"]) == spec
