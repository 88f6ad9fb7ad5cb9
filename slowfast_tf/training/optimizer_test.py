import keras
import numpy as np
import pytest
import torch

from slowfast_tf.training import optimizer as optimizer_lib
from slowfast_tf.training.lr_schedule import SlowFastLRSchedule, get_lr_at_epoch


def _tiny_model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(name="ln")(x)  # Not BN: must still be decayed.
    outputs = keras.layers.Dense(3, name="head_projection")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_weight_decay_excludes_exactly_batch_norm_gamma_beta(mode):
    model = _tiny_model()
    opt = optimizer_lib.build_optimizer(model, 0.1, weight_decay=1e-4, weight_decay_mode=mode)
    decayed = optimizer_lib.decayed_variable_paths(opt, model)
    assert sorted(decayed) == sorted(
        ["conv/kernel", "ln/gamma", "ln/beta", "head_projection/kernel", "head_projection/bias"]
    )


def test_torch_sgd_matches_torch_with_schedule_and_bn_group():
    """Several steps with a changing LR and nesterov momentum, vs torch.optim.SGD param groups."""
    rng = np.random.default_rng(0)
    shapes = {"kernel": (3, 5), "bias": (5,), "bn_gamma": (5,)}
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
             for _ in range(6)]
    schedule_kwargs = dict(base_lr=0.2, max_epoch=3, warmup_epochs=1.0, warmup_start_lr=0.02)
    steps_per_epoch = 2

    tparams = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    topt = torch.optim.SGD(
        [
            {"params": [tparams["kernel"], tparams["bias"]], "weight_decay": 1e-2},
            {"params": [tparams["bn_gamma"]], "weight_decay": 0.0},
        ],
        lr=0.1, momentum=0.9, nesterov=True, dampening=0.0,
    )
    for step, grad in enumerate(grads):
        lr = get_lr_at_epoch(step / steps_per_epoch, **schedule_kwargs)
        for group in topt.param_groups:
            group["lr"] = lr
        for k, p in tparams.items():
            p.grad = torch.tensor(grad[k])
        topt.step()

    kvars = {k: keras.Variable(v, name=k) for k, v in init.items()}
    kopt = optimizer_lib.TorchSGD(
        SlowFastLRSchedule(steps_per_epoch, **schedule_kwargs), l2_weight_decay=1e-2
    )
    kopt.exclude_from_weight_decay(var_list=[kvars["bn_gamma"]])
    order = list(kvars)
    for grad in grads:
        kopt.apply_gradients([(grad[k], kvars[k]) for k in order])
    for k in order:
        np.testing.assert_allclose(
            kvars[k].numpy(), tparams[k].detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k
        )


def test_torch_sgd_config_round_trip_and_refuses_decoupled_decay():
    opt = optimizer_lib.TorchSGD(0.05, l2_weight_decay=1e-4)
    restored = optimizer_lib.TorchSGD.from_config(opt.get_config())
    assert restored.l2_weight_decay == pytest.approx(1e-4) and restored.nesterov
    with pytest.raises(ValueError, match="weight_decay=0.1"):
        optimizer_lib.TorchSGD(0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="weight_decay_mode='l2'"):
        optimizer_lib.build_optimizer(_tiny_model(), 0.1, weight_decay_mode="l2")
