"""PySlowFast learning-rate policies: cosine or steps, with a linear warmup, per iteration.

PySlowFast (``slowfast/utils/lr_policy.py``) recomputes the LR before **every iteration** at the
fractional epoch ``e = epoch + iter / iters_per_epoch``. During warmup (``e < warmup_epochs``) the
LR goes linearly from ``warmup_start_lr`` to the value the main policy has *at the end of the
warmup* -- for the Kinetics recipe that is ``cosine(34) = 0.09276``, not ``base_lr = 0.1``.

``get_lr_at_epoch`` is the plain-Python reference; ``SlowFastLRSchedule`` is the same formula in
``keras.ops`` driven by ``optimizer.iterations``, so it resumes exactly after a restart (the step
counter is part of the optimizer checkpoint).
"""

import math

import keras
from keras import ops

LR_POLICIES = ("cosine", "steps_with_relative_lrs")


def scale_learning_rate(lr: float, global_batch_size: int, base_batch_size: int = 64) -> float:
    """Linear scaling rule (Goyal et al. 2017): PySlowFast uses 0.1 per 64 clips, 1.6 at 1024.

    Args:
        lr: float, the learning rate that is right for ``base_batch_size`` clips.
        global_batch_size: int, clips per optimizer step summed over all replicas.
        base_batch_size: int, batch size ``lr`` refers to.

    Returns:
        float, ``lr * global_batch_size / base_batch_size``.
    """
    if global_batch_size <= 0 or base_batch_size <= 0:
        raise ValueError(
            "Batch sizes must be positive. Received: "
            f"global_batch_size={global_batch_size}, base_batch_size={base_batch_size}"
        )
    return lr * global_batch_size / base_batch_size


def _check_policy_args(policy, base_lr, max_epoch, warmup_epochs, steps, lrs):
    if policy not in LR_POLICIES:
        raise ValueError(f"`policy` must be one of {LR_POLICIES}. Received: policy={policy!r}")
    if max_epoch <= 0:
        raise ValueError(f"`max_epoch` must be > 0. Received: max_epoch={max_epoch}")
    if warmup_epochs < 0 or warmup_epochs > max_epoch:
        raise ValueError(
            f"`warmup_epochs` must be in [0, max_epoch={max_epoch}]. "
            f"Received: warmup_epochs={warmup_epochs}"
        )
    if base_lr <= 0:
        raise ValueError(f"`base_lr` must be > 0. Received: base_lr={base_lr}")
    if policy == "steps_with_relative_lrs":
        if not steps or len(steps) != len(lrs) or steps[0] != 0:
            raise ValueError(
                "`steps` must start at 0 and have one relative LR each. "
                f"Received: steps={steps}, lrs={lrs}"
            )


def get_lr_at_epoch(
    epoch: float,
    base_lr: float = 0.1,
    max_epoch: float = 196,
    warmup_epochs: float = 34.0,
    warmup_start_lr: float = 0.01,
    policy: str = "cosine",
    cosine_end_lr: float = 0.0,
    steps: tuple = (),
    lrs: tuple = (),
) -> float:
    """Reference (pure Python) LR at a fractional epoch, as PySlowFast's ``get_lr_at_epoch``.

    Args:
        epoch: float, fractional epoch ``epoch + iter / iters_per_epoch``.
        base_lr: float, ``SOLVER.BASE_LR``.
        max_epoch: float, ``SOLVER.MAX_EPOCH`` (196 for Kinetics SlowFast R50).
        warmup_epochs: float, ``SOLVER.WARMUP_EPOCHS`` (34).
        warmup_start_lr: float, ``SOLVER.WARMUP_START_LR`` (0.01).
        policy: str, ``"cosine"`` or ``"steps_with_relative_lrs"``.
        cosine_end_lr: float, ``SOLVER.COSINE_END_LR`` (0).
        steps: tuple of epochs where a step starts, beginning with 0 (steps policy).
        lrs: tuple of LR multipliers, one per step (steps policy).

    Returns:
        float learning rate.
    """
    _check_policy_args(policy, base_lr, max_epoch, warmup_epochs, steps, lrs)

    def main_policy(e):
        if policy == "cosine":
            return cosine_end_lr + (base_lr - cosine_end_lr) * (
                math.cos(math.pi * e / max_epoch) + 1.0
            ) * 0.5
        index = 0
        for i, start in enumerate(steps):
            if e >= start:
                index = i
        return lrs[index] * base_lr

    lr = main_policy(epoch)
    if epoch < warmup_epochs:
        lr_end = main_policy(warmup_epochs)
        lr = warmup_start_lr + epoch * (lr_end - warmup_start_lr) / warmup_epochs
    return lr


@keras.saving.register_keras_serializable(package="slowfast_tf")
class SlowFastLRSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``get_lr_at_epoch`` evaluated at ``step / steps_per_epoch`` (a per-iteration schedule).

    Args:
        steps_per_epoch: int, optimizer steps in one epoch (``iters_per_epoch``).
        base_lr: float, peak LR after any linear scaling.
        max_epoch: float, total training epochs.
        warmup_epochs: float, linear warmup length in epochs (0 disables warmup).
        warmup_start_lr: float, LR at step 0.
        policy: str, ``"cosine"`` or ``"steps_with_relative_lrs"``.
        cosine_end_lr: float, LR at ``max_epoch`` for the cosine policy.
        steps: list of step-start epochs (steps policy), starting with 0.
        lrs: list of LR multipliers (steps policy).
    """

    def __init__(
        self,
        steps_per_epoch,
        base_lr=0.1,
        max_epoch=196,
        warmup_epochs=34.0,
        warmup_start_lr=0.01,
        policy="cosine",
        cosine_end_lr=0.0,
        steps=(),
        lrs=(),
    ):
        if int(steps_per_epoch) <= 0:
            raise ValueError(
                f"`steps_per_epoch` must be > 0. Received: steps_per_epoch={steps_per_epoch}"
            )
        _check_policy_args(policy, base_lr, max_epoch, warmup_epochs, steps, lrs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.base_lr = float(base_lr)
        self.max_epoch = float(max_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_start_lr = float(warmup_start_lr)
        self.policy = policy
        self.cosine_end_lr = float(cosine_end_lr)
        self.steps = [float(s) for s in steps]
        self.lrs = [float(v) for v in lrs]

    def _main_policy(self, epoch):
        if self.policy == "cosine":
            cosine = ops.cos(math.pi * epoch / self.max_epoch)
            return self.cosine_end_lr + (self.base_lr - self.cosine_end_lr) * (cosine + 1.0) * 0.5
        lr = ops.zeros_like(epoch) + self.lrs[0] * self.base_lr
        for start, rel in zip(self.steps[1:], self.lrs[1:]):
            lr = ops.where(epoch >= start, rel * self.base_lr, lr)
        return lr

    def __call__(self, step):
        # float32 holds integers exactly up to 2^24 = 16.7M steps, plenty for any schedule here.
        epoch = ops.cast(step, "float32") / float(self.steps_per_epoch)
        lr = self._main_policy(epoch)
        if self.warmup_epochs > 0:
            lr_end = self._main_policy(ops.convert_to_tensor(self.warmup_epochs, "float32"))
            slope = (lr_end - self.warmup_start_lr) / self.warmup_epochs
            lr = ops.where(epoch < self.warmup_epochs, self.warmup_start_lr + epoch * slope, lr)
        return lr

    def get_config(self):
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "base_lr": self.base_lr,
            "max_epoch": self.max_epoch,
            "warmup_epochs": self.warmup_epochs,
            "warmup_start_lr": self.warmup_start_lr,
            "policy": self.policy,
            "cosine_end_lr": self.cosine_end_lr,
            "steps": list(self.steps),
            "lrs": list(self.lrs),
        }
