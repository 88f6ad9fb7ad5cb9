"""``python -m tfrecords_tools {convert,inspect}``.

Kept import-free at module level: spawned workers re-import the main module, and they should not
pay for TensorFlow.
"""

if __name__ == "__main__":
    import sys

    from slowfast_tf.utils import tf_startup

    tf_startup.quiet_tf_startup()  # Before TF is imported: no duplicated start-up/cuInit noise.

    from tfrecords_tools.cli import run

    sys.exit(run())
