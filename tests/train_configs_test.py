"""Every configs/*.flags parses with train.py's flags and resolves to a consistent model + data."""

import glob
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHECK = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import train
from slowfast_tf.models import get_preset
results = {}
for path in sys.argv[2:]:
    train.FLAGS.unparse_flags()
    train.FLAGS(["train.py", f"--flagfile={path}", "--model_dir=/tmp/unused"])
    data = train.build_data_config()
    preset = get_preset(train.FLAGS.model)
    overrides = json.loads(train.FLAGS.model_overrides)
    # As train.build_classifier: the model gets the data's clip length unless overridden.
    num_frames = overrides.get("num_frames", data.num_frames)
    arch = overrides.get("arch", preset.backbone.get("arch", "slowfast"))
    alpha = overrides.get("alpha", preset.alpha)
    if arch == "slowfast":
        frames = {"slow": num_frames // alpha, "fast": num_frames}
    else:
        frames = {"fast" if arch == "fast" else "slow": num_frames}
    results[path] = {
        "model": train.FLAGS.model, "epochs": train.FLAGS.epochs,
        "multi_label": train.FLAGS.multi_label, "data_multi_label": data.multi_label,
        "num_classes": train.FLAGS.num_classes, "data_num_classes": data.num_classes,
        "data_frames": data.frames_per_pathway(), "model_frames": frames,
        "peak_lr_per_clip": train.FLAGS.base_lr / train.FLAGS.base_batch_size,
    }
print(json.dumps(results))
"""


def test_all_flagfiles_parse_and_agree():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*.flags")))
    # AVA detector flagfiles: tests/train_detection_test.py.
    paths = [p for p in paths if "ava_" not in os.path.basename(p)]
    names = {os.path.basename(p) for p in paths}
    assert {"k400_slowfast_r50_8x8.flags", "k400_slowfast_r50_4x16.flags",
            "k400_slowfast_r101_8x8.flags", "charades_slowfast_r50_16x8.flags",
            "synthetic_slowfast.flags", "synthetic_slow.flags"} <= names
    for path in paths:
        with open(path) as f:
            first = f.readline()
        assert first.startswith("#"), f"{path} must start with a comment (command, time, accuracy)"
        with open(path) as f:
            header = f.read()
        assert "python" in header and "Expected time" in header and "Expected" in header, path
    out = subprocess.run([sys.executable, "-c", _CHECK, REPO, *paths], capture_output=True,
                         text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for path, r in results.items():
        assert r["multi_label"] == r["data_multi_label"], path
        assert r["num_classes"] == r["data_num_classes"], path
        assert r["data_frames"] == r["model_frames"], path
    k400 = results[os.path.join(REPO, "configs", "k400_slowfast_r50_8x8.flags")]
    assert k400["epochs"] == 196 and abs(k400["peak_lr_per_clip"] - 0.1 / 64) < 1e-12
    charades = results[os.path.join(REPO, "configs", "charades_slowfast_r50_16x8.flags")]
    assert charades["multi_label"] and charades["data_frames"] == {"slow": 16, "fast": 64}
