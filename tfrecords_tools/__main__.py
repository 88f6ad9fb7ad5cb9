"""``python -m tfrecords_tools {convert,inspect}``.

Kept import-free at module level: spawned workers re-import the main module, and they should not
pay for TensorFlow.
"""

if __name__ == "__main__":
    from tfrecords_tools.cli import main

    main()
