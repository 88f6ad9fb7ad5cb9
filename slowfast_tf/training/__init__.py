"""Training recipe (PySlowFast), distribution helpers and multi-view evaluation."""

from slowfast_tf.training.evaluation import aggregate_views, evaluate_multiview, per_class_report
from slowfast_tf.training.losses import build_loss
from slowfast_tf.training.lr_schedule import SlowFastLRSchedule, get_lr_at_epoch
from slowfast_tf.training.metrics import mean_average_precision, topk_accuracy
from slowfast_tf.training.optimizer import TorchSGD, build_optimizer
from slowfast_tf.training.precise_bn import update_bn_stats
from slowfast_tf.training.strategy import build_strategy, set_precision_policy

__all__ = [
    "SlowFastLRSchedule",
    "TorchSGD",
    "aggregate_views",
    "build_loss",
    "build_optimizer",
    "build_strategy",
    "evaluate_multiview",
    "get_lr_at_epoch",
    "mean_average_precision",
    "per_class_report",
    "set_precision_policy",
    "topk_accuracy",
    "update_bn_stats",
]
