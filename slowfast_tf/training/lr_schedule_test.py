import math

import numpy as np
import pytest

from slowfast_tf.training import lr_schedule


def test_kinetics_cosine_reference_values():
    # SLOWFAST_8x8_R50: base 0.1, 196 epochs, 34 warmup epochs from 0.01.
    assert lr_schedule.get_lr_at_epoch(0.0) == pytest.approx(0.01)
    # End of warmup = cosine(34), not base_lr.
    cos34 = 0.05 * (math.cos(math.pi * 34 / 196) + 1)
    assert cos34 == pytest.approx(0.09276, abs=5e-6)
    assert lr_schedule.get_lr_at_epoch(34.0) == pytest.approx(cos34)
    assert lr_schedule.get_lr_at_epoch(17.0) == pytest.approx(0.01 + 17 * (cos34 - 0.01) / 34)
    assert lr_schedule.get_lr_at_epoch(98.0) == pytest.approx(0.05)
    assert lr_schedule.get_lr_at_epoch(196.0) == pytest.approx(0.0, abs=1e-12)


def test_steps_policy_reference_values():
    kwargs = dict(
        base_lr=0.1, max_epoch=239, policy="steps_with_relative_lrs",
        steps=(0, 94, 154, 196), lrs=(1, 0.1, 0.01, 0.001),
    )
    # Warmup ends at the step policy's value at e=34, i.e. 0.1.
    assert lr_schedule.get_lr_at_epoch(17, **kwargs) == pytest.approx(0.01 + 17 * 0.09 / 34)
    assert lr_schedule.get_lr_at_epoch(93.99, **kwargs) == pytest.approx(0.1)
    assert lr_schedule.get_lr_at_epoch(94, **kwargs) == pytest.approx(0.01)
    assert lr_schedule.get_lr_at_epoch(200, **kwargs) == pytest.approx(1e-4)


@pytest.mark.parametrize("policy", ["cosine", "steps_with_relative_lrs"])
def test_keras_schedule_matches_reference_per_iteration(policy):
    kwargs = dict(base_lr=0.4, max_epoch=12, warmup_epochs=3.0, warmup_start_lr=0.04,
                  policy=policy)
    if policy != "cosine":
        kwargs.update(steps=(0, 5, 9), lrs=(1.0, 0.1, 0.01))
    steps_per_epoch = 7
    schedule = lr_schedule.SlowFastLRSchedule(steps_per_epoch, **kwargs)
    steps = np.arange(0, 12 * steps_per_epoch + 1)
    got = np.array([float(schedule(s)) for s in steps])
    want = np.array([lr_schedule.get_lr_at_epoch(s / steps_per_epoch, **kwargs) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    restored = lr_schedule.SlowFastLRSchedule.from_config(schedule.get_config())
    assert float(restored(40)) == pytest.approx(float(schedule(40)))


def test_linear_scaling_and_errors():
    assert lr_schedule.scale_learning_rate(0.1, 1024) == pytest.approx(1.6)
    assert lr_schedule.scale_learning_rate(0.1, 16) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="global_batch_size=0"):
        lr_schedule.scale_learning_rate(0.1, 0)
    with pytest.raises(ValueError, match="policy='linear'"):
        lr_schedule.get_lr_at_epoch(1.0, policy="linear")
    with pytest.raises(ValueError, match="steps_per_epoch=0"):
        lr_schedule.SlowFastLRSchedule(0)
