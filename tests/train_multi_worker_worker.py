"""One worker of the 2-process MultiWorkerMirroredStrategy test (run by train_multi_worker_test).

Usage: TF_CONFIG=... python tests/train_multi_worker_worker.py MODEL_DIR OUT.npz
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from slowfast_tf.training import strategy as strategy_lib  # noqa: E402
from slowfast_tf.training import trainer  # noqa: E402


def main(model_dir, out_path):
    strategy = strategy_lib.build_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inputs = {"slow": keras.Input((2, 8, 8, 3), name="slow")}
        x = keras.layers.Conv3D(4, 3, padding="same", use_bias=False)(inputs["slow"])
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling3D()(keras.layers.ReLU()(x))
        model = keras.Model(inputs, keras.layers.Dense(3, name="head_projection")(x))
        recipe = trainer.RecipeConfig(num_classes=3, epochs=2, warmup_epochs=1, base_lr=1.6,
                                      global_batch_size=4, base_batch_size=64)
        trainer.compile_model(model, recipe, steps_per_epoch=2)
    # Different data on each worker: the all-reduce must still keep the weights identical.
    task = int(strategy_lib.task_id().split("_")[-1])
    rng = np.random.default_rng(task)
    clips = rng.normal(size=(16, 2, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, 16).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices(({"slow": clips}, labels)).repeat().batch(4)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    history = trainer.fit(model, ds, recipe, model_dir, steps_per_epoch=2, tensorboard=False,
                          verbose=0)
    np.savez(out_path, loss=np.array(history.history["loss"]),
             **{f"w{i}": keras.ops.convert_to_numpy(v)
                for i, v in enumerate(model.trainable_variables)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
