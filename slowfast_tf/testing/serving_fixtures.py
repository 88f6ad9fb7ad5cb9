"""Session-scoped export shared by the serving tests: build and export the tiny model once.

Tracing and saving the two signatures costs ~25 s on a 2-core machine, so every serving test
module reuses one export (and one TF1 session loaded from it).

A pytest plugin (the root ``conftest.py`` lists it in ``pytest_plugins``), so that tests in
``slowfast_tf/serving/`` and ``slowfast_tf/testing/`` share one export. TensorFlow is imported
inside the fixtures, not when pytest loads the plugin.
"""

import os

import pytest


@pytest.fixture(scope="session")
def tiny_model():
    from slowfast_tf.testing import serving_models

    return serving_models.tiny_classifier(num_classes=len(serving_models.LABELS))


@pytest.fixture(scope="session")
def serving_export(tiny_model, tmp_path_factory):
    """`(ExportResult, ServingConfig, export_base)` of the tiny model, version 1."""
    from slowfast_tf.serving import export_lib, signatures
    from slowfast_tf.testing.serving_models import LABELS, MODEL_NAME

    base = str(tmp_path_factory.mktemp("model_repository"))
    # The clip spec comes from the model (serving_models.TINY_CLIP_SPEC: 72 px short side, 64 px
    # crop); only top_k is set here.
    config = signatures.serving_config_from_model(tiny_model, top_k=3)
    result = export_lib.export_for_serving(
        tiny_model, base, MODEL_NAME, config, LABELS, serving_base_path=f"/models/{MODEL_NAME}"
    )
    assert os.path.isdir(result.export_dir)
    return result, config, base


@pytest.fixture(scope="session")
def session_runner(serving_export):
    from slowfast_tf.testing import local_server

    runner = local_server.SessionRunner(serving_export[0].export_dir)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def detector_export(tmp_path_factory):
    """`(model, export_dir, AvaDataConfig)` of the tiny AVA detector, version 1, with warm-up."""
    from slowfast_tf.serving import detection_signatures
    from slowfast_tf.testing import serving_models as testing_utils

    model = testing_utils.tiny_detector()
    config = testing_utils.detector_data_config()
    path = str(tmp_path_factory.mktemp("detector_repository") / testing_utils.DETECTOR_NAME / "1")
    detection_signatures.save_detection_model(
        model, path, config, testing_utils.DETECTOR_LABELS, top_k=3,
        warmup_model_name=testing_utils.DETECTOR_NAME,
    )
    return model, path, config


@pytest.fixture(scope="session")
def detector_runner(detector_export):
    from slowfast_tf.testing import local_server

    runner = local_server.SessionRunner(detector_export[1])
    yield runner
    runner.close()
