"""A BN-folded export (export.py's default) serves what the unfolded one does, in fewer bytes."""

import numpy as np
import pytest

from slowfast_tf.models.common import bn_folding
from slowfast_tf.serving import export_lib
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import LABELS, MODEL_NAME


@pytest.mark.slow
def test_folded_export_equals_unfolded(tiny_model, serving_export, session_runner, tmp_path):
    _, config, _ = serving_export
    folded = bn_folding.fold_batch_norm(tiny_model)
    result = export_lib.export_for_serving(
        folded, str(tmp_path), MODEL_NAME, config, LABELS, warmup=False
    )
    size = export_lib.variables_size_bytes(result.export_dir)
    assert size <= 1.05 * export_lib.weight_bytes(tiny_model)
    frames = np.random.default_rng(3).integers(0, 256, (2, 8, 72, 80, 3), dtype=np.uint8)
    runner = local_server.SessionRunner(result.export_dir)
    try:
        got = runner.run("serving_default", {"frames": frames})
    finally:
        runner.close()
    expected = session_runner.run("serving_default", {"frames": frames})
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["top_k_ids"], expected["top_k_ids"])
