"""Session-scoped export shared by the serving tests: build and export the tiny model once.

Tracing and saving the two signatures costs ~25 s on a 2-core machine, so every serving test
module reuses one export (and one TF1 session loaded from it).
"""

import os

import pytest

from slowfast_tf.serving import export_lib, local_server, signatures, testing_utils
from slowfast_tf.serving.testing_utils import LABELS, MODEL_NAME


@pytest.fixture(scope="session")
def tiny_model():
    return testing_utils.tiny_classifier(num_classes=len(LABELS))


@pytest.fixture(scope="session")
def serving_export(tiny_model, tmp_path_factory):
    """`(ExportResult, ServingConfig, export_base)` of the tiny model, version 1."""
    base = str(tmp_path_factory.mktemp("model_repository"))
    # The clip spec comes from the model (testing_utils.TINY_CLIP_SPEC: 72 px short side, 64 px
    # crop); only top_k is set here.
    config = signatures.serving_config_from_model(tiny_model, top_k=3)
    result = export_lib.export_for_serving(
        tiny_model, base, MODEL_NAME, config, LABELS, serving_base_path=f"/models/{MODEL_NAME}"
    )
    assert os.path.isdir(result.export_dir)
    return result, config, base


@pytest.fixture(scope="session")
def session_runner(serving_export):
    runner = local_server.SessionRunner(serving_export[0].export_dir)
    yield runner
    runner.close()
