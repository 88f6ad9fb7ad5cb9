"""SGD exactly as PySlowFast trains: torch semantics, Nesterov, L2 weight decay off BN parameters.

Two differences between ``torch.optim.SGD`` and ``keras.optimizers.SGD`` matter for a faithful port:

1. **Weight decay.** torch adds ``wd * w`` to the gradient *before* momentum ("coupled" L2: the
   decay is scaled by the LR and accumulated in the momentum buffer). Keras 3 ``weight_decay`` is
   *decoupled*: after the update it does ``w -= lr * wd * w``, outside the momentum. With momentum
   0.9 the effective decay differs by ~10x in steady state, so the recipe's ``wd = 1e-4`` only means
   the same thing with coupled decay. ``TorchSGD`` therefore adds ``wd * w`` to the gradient itself
   (equivalent to adding ``wd/2 * ||w||^2`` to the loss, without touching the loss value, the loss
   scale or the per-replica division).
2. **Where the LR sits.** torch keeps ``buf = m * buf + g`` and steps ``w -= lr * (g + m * buf)``
   (Nesterov); Keras folds the LR into the buffer (``v = m * v - lr * g``). The two agree only for a
   constant LR; with the per-iteration cosine/warmup schedule torch's form is the reference.

``build_optimizer`` excludes exactly the BatchNorm gamma/beta variables from decay (PySlowFast puts
BN parameters in a group with ``BN.WEIGHT_DECAY = 0``; conv kernels, the FC kernel **and bias**, and
non-local conv biases are all decayed). The exclusion uses ``exclude_from_weight_decay(var_list=)``
(identity), not ``var_names`` (a regex on ``variable.name``, which in Keras 3 is only the short name
such as ``"gamma"`` -- it would match any layer's ``gamma``).
"""

import keras
from keras import ops

from slowfast_tf import compat


@keras.saving.register_keras_serializable(package="slowfast_tf")
class TorchSGD(keras.optimizers.SGD):
    """SGD with ``torch.optim.SGD`` update rules (dampening 0) and coupled L2 weight decay.

    Per variable with gradient ``g`` (``l2`` is zero for excluded variables)::

        g = g + l2 * w
        buf = momentum * buf + g            # buf = g on the first step (buf starts at 0)
        g = g + momentum * buf if nesterov else buf
        w = w - lr * g

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        momentum: float, momentum factor (0.9 in PySlowFast).
        nesterov: bool, Nesterov momentum (PySlowFast's default ``True``).
        l2_weight_decay: float, coupled L2 factor (``SOLVER.WEIGHT_DECAY``, 1e-4). Excluded
            variables are set with ``exclude_from_weight_decay`` as for any Keras optimizer.
        **kwargs: other ``keras.optimizers.Optimizer`` arguments (``name``, ``global_clipnorm``, ...).
            ``weight_decay`` (Keras's decoupled decay) is refused: use ``l2_weight_decay``.
    """

    def __init__(
        self, learning_rate=0.1, momentum=0.9, nesterov=True, l2_weight_decay=0.0, **kwargs
    ):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "TorchSGD applies coupled L2 decay through `l2_weight_decay`; Keras's decoupled "
                f"`weight_decay` must stay None. Received: weight_decay={kwargs['weight_decay']}"
            )
        kwargs.pop("weight_decay", None)
        if l2_weight_decay < 0:
            raise ValueError(f"`l2_weight_decay` must be >= 0. Received: {l2_weight_decay}")
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)
        self.l2_weight_decay = float(l2_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        # `uses_weight_decay` consults the `exclude_from_weight_decay` sets (a Python bool, so
        # excluded variables get no extra op in the graph).
        if self.l2_weight_decay > 0 and compat.uses_weight_decay(self, variable):
            gradient = gradient + ops.cast(self.l2_weight_decay, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        buf = self.momentums[compat.variable_index(self, variable)]
        new_buf = momentum * buf + gradient
        self.assign(buf, new_buf)
        step = gradient + momentum * new_buf if self.nesterov else new_buf
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        config = super().get_config()
        config["l2_weight_decay"] = self.l2_weight_decay
        return config


def batch_norm_variables(model: keras.Model) -> list:
    """Returns the trainable gamma/beta variables of every BatchNormalization layer in ``model``.

    Args:
        model: a built ``keras.Model`` (nested models and layers are searched).

    Returns:
        list of ``keras.Variable``.
    """
    bn_types = (keras.layers.BatchNormalization,)
    variables = []
    for layer in compat.flatten_layers(model, include_self=False):
        if isinstance(layer, bn_types):
            variables.extend(v for v in (layer.gamma, layer.beta) if v is not None)
    return [v for v in variables if v.trainable]


def build_optimizer(
    model: keras.Model,
    learning_rate,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    weight_decay_mode: str = "coupled",
    clipnorm: float | None = None,
) -> keras.optimizers.Optimizer:
    """Builds the PySlowFast SGD for ``model`` with BN gamma/beta excluded from weight decay.

    Args:
        model: built ``keras.Model`` whose BatchNorm variables must not be decayed.
        learning_rate: float or ``LearningRateSchedule``.
        momentum: float, SGD momentum.
        nesterov: bool, Nesterov momentum.
        weight_decay: float, decay factor for all non-BN trainable variables.
        weight_decay_mode: ``"coupled"`` (torch L2-in-gradient, faithful; ``TorchSGD``) or
            ``"decoupled"`` (stock ``keras.optimizers.SGD(weight_decay=...)``, for comparison).
        clipnorm: optional float, global gradient-norm clipping (off in PySlowFast).

    Returns:
        a Keras optimizer (not yet built).
    """
    if weight_decay_mode not in ("coupled", "decoupled"):
        raise ValueError(
            "`weight_decay_mode` must be 'coupled' or 'decoupled'. "
            f"Received: weight_decay_mode={weight_decay_mode!r}"
        )
    if not model.built:
        raise ValueError(f"Build the model before the optimizer. Received: unbuilt {model.name}")
    kwargs = {"global_clipnorm": clipnorm} if clipnorm else {}
    if weight_decay_mode == "coupled":
        optimizer = TorchSGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            l2_weight_decay=weight_decay,
            **kwargs,
        )
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay or None,
            **kwargs,
        )
    optimizer.exclude_from_weight_decay(var_list=batch_norm_variables(model))
    return optimizer


def decayed_variable_paths(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> list:
    """The ``variable.path`` of every trainable variable ``optimizer`` decays (for logs and tests)."""
    return [v.path for v in model.trainable_variables if compat.uses_weight_decay(optimizer, v)]
