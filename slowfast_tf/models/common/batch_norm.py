"""``BatchNormalization`` with a fused training kernel where the backend has one.

Keras's own training-mode batch norm is a graph of ``moments`` and elementwise ops, and its
gradient is autodiff through that graph: on TF CPU it took ~20% of a SlowFast R50 training step.
:class:`BatchNormalization` is the same layer (same variables, names, config, moving-average rule
and outputs to float32 round-off) that, in training, asks :mod:`slowfast_tf.kernels` for the
backend's fused kernel (TensorFlow: ``FusedBatchNormV3``, one op forward and one backward) and
otherwise runs Keras's code. Inference is Keras's code on every backend.
"""

import keras
from keras import ops

from slowfast_tf import kernels


@keras.saving.register_keras_serializable(package="slowfast_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused training path (see the module docstring).

    The fused path is taken in training for float inputs (computed in float32) of rank 4 or 5 normalised over the
    last axis, when the layer is trainable and neither synchronized, renormalizing nor masked;
    every other case is ``keras.layers.BatchNormalization.call``.
    """

    def _fused_kernel(self, inputs, training, mask):
        if not (training and self.trainable) or mask is not None:
            return None
        if self.synchronized or self.renorm or not (self.scale and self.center):
            return None
        if len(inputs.shape) not in (4, 5) or self.axis not in (-1, len(inputs.shape) - 1):
            return None
        if keras.backend.standardize_dtype(inputs.dtype) not in ("float16", "bfloat16", "float32"):
            return None
        return kernels.get("batch_norm_train")

    def call(self, inputs, training=None, mask=None):
        kernel = self._fused_kernel(inputs, training, mask)
        if kernel is None:
            return super().call(inputs, training=training, mask=mask)
        # As Keras: statistics in float32 whatever the compute dtype (mixed precision).
        outputs, mean, variance = kernel(
            ops.cast(inputs, "float32"),
            ops.cast(self.gamma, "float32"),
            ops.cast(self.beta, "float32"),
            self.epsilon,
        )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return ops.cast(outputs, self.compute_dtype)
