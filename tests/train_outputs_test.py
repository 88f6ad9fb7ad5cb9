"""train.py's own output files (flags.txt / flags.json) go through the atomic-write helper."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHECK = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import train
from slowfast_tf.utils import fileio

opened = []
real = fileio.atomic_open
def spy(path, *args, **kwargs):
    opened.append(os.path.basename(path))
    return real(path, *args, **kwargs)
fileio.atomic_open = spy
train.FLAGS(["train.py", "--model_dir=" + sys.argv[2], "--num_classes=7"])
train.write_resolved_flags(sys.argv[2], {"steps_per_epoch": 3})
print(json.dumps(opened))
"""


def test_flags_files_are_written_atomically(tmp_path):
    (tmp_path / "flags.txt").write_text("old")
    out = subprocess.run([sys.executable, "-c", _CHECK, REPO, str(tmp_path)], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["flags.txt", "flags.json"]
    assert "--num_classes=7" in (tmp_path / "flags.txt").read_text().splitlines()
    assert json.loads((tmp_path / "flags.json").read_text())["steps_per_epoch"] == 3
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
