"""tfrecords_tools: videos -> sharded TFRecords of SequenceExamples, and a record inspector.

    python -m tfrecords_tools convert --input train.csv --path_prefix DATA --split train --output_dir OUT
    python -m tfrecords_tools inspect "OUT/train-*.tfrecord" --sheet sheet.png

This package root imports nothing heavy: multiprocessing workers import it and must stay light.
"""
