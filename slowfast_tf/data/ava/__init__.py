"""AVA spatio-temporal action detection data: file formats, records, tf.data pipeline, synthetic set."""
