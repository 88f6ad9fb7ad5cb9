"""Backend-specific fast paths for model layers, each with a portable ``keras.ops`` fallback.

The model code (``slowfast_tf/models``) stays ``keras`` / ``keras.ops`` only and runs on every
backend. Where one backend has a much faster primitive for the same math (TensorFlow's fused
batch norm on CPU, say), a layer asks :func:`get` for it; the lookup imports the backend's module
here only when that backend is the active one, so the JAX and torch backends never import
TensorFlow. A layer that gets ``None`` uses its ``keras.ops`` formulation.
"""

import keras


def get(name):
    """Returns the active backend's kernel ``name``, or None when that backend has none."""
    if keras.backend.backend() == "tensorflow":
        from slowfast_tf.kernels import tf_kernels

        return getattr(tf_kernels, name, None)
    return None
