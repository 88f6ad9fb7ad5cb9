"""slowfast_tf: SlowFast video networks in TensorFlow / Keras 3."""

__version__ = "0.1.0"
