"""Full-size export check (SlowFast R50 8x8 at the 256 test crop); run with --run-large."""

import numpy as np
import pytest

from slowfast_tf.models import build_model
from slowfast_tf.serving import export_lib, signatures
from slowfast_tf.testing import local_server


@pytest.mark.large
def test_slowfast_r50_export_matches_keras(tmp_path):
    model = build_model("slowfast_r50_8x8", num_classes=400)
    config = signatures.serving_config_from_model(model)  # 32 frames, alpha 4, 256 / 256
    labels = [f"class_{i}" for i in range(400)]
    result = export_lib.export_for_serving(model, str(tmp_path), "slowfast", config, labels)
    ratio = export_lib.variables_size_bytes(result.export_dir) / export_lib.weight_bytes(model)
    assert ratio <= 1.05, ratio
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 256, 256, 3), dtype=np.uint8)
    runner = local_server.SessionRunner(result.export_dir)
    got = runner.run("serving_default", {"frames": frames})["probabilities"]
    x = (frames.astype(np.float32) / 255.0 - 0.45) / 0.225
    inputs = {"slow": x[:, [0, 4, 8, 13, 17, 22, 26, 31]], "fast": x}  # PySlowFast linspace
    expected = model.build_eval_model()(inputs, training=False)["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
