"""Losses of the PySlowFast recipes, on the classifier's logits.

- Single-label (Kinetics, SSv2, the synthetic set): ``cross_entropy`` = softmax cross-entropy on
  logits, mean over the batch. No label smoothing (PySlowFast only smooths with mixup on).
- Multi-label (Charades): ``bce_logit`` = ``BCEWithLogitsLoss`` with ``mean`` reduction, i.e. the
  mean over batch *and* classes, which is what Keras's ``BinaryCrossentropy`` computes too.
"""

import keras


def build_loss(multi_label: bool = False) -> keras.losses.Loss:
    """Returns the training loss for single-label (int labels) or multi-label (multi-hot) data.

    Args:
        multi_label: bool, multi-hot float ``[B, C]`` labels and sigmoid/BCE if True; otherwise
            int ``[B]`` labels and softmax cross-entropy.

    Returns:
        a ``keras.losses.Loss`` that takes logits.
    """
    if multi_label:
        return keras.losses.BinaryCrossentropy(from_logits=True, name="bce_logit")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy")
