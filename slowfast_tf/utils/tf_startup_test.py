import os
import subprocess
import sys

import pytest

from slowfast_tf.utils import tf_startup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code, env=None):
    env = {**(env if env is not None else os.environ), "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, env=env)


def test_filtered_stderr_drops_only_matching_lines_written_at_the_fd_level():
    out = _python(
        "import os, sys\n"
        "from slowfast_tf.utils.tf_startup import filtered_stderr\n"
        "with filtered_stderr([b'cuInit']):\n"
        "    os.write(2, b'keep 1\\nE0000 failed call to cuInit: x\\n')\n"
        "    print('keep 2', file=sys.stderr)\n"
        "    os.write(2, b'partial line')\n"
        "os.write(2, b'\\nafter cuInit\\n')\n"
    )
    assert out.returncode == 0
    assert out.stderr == b"keep 1\nkeep 2\npartial line\nafter cuInit\n"


@pytest.mark.skipif(tf_startup.cuda_driver_loadable(), reason="a CUDA driver is present")
def test_quiet_start_up_without_a_driver_keeps_other_output():
    code = (
        "import os\n"
        "from slowfast_tf.utils import tf_startup\n"
        "tf_startup.quiet_tf_startup()\n"
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"
        "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'\n"
        "os.write(2, b'a real warning\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = _python(code, env)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    stderr = out.stderr.decode()
    # Before: the cudart_stub pair twice, cpu_feature_guard, and the cuInit "error".
    for noise in ("cuInit", "cudart_stub", "cpu_feature_guard", "absl::InitializeLog"):
        assert noise not in stderr, stderr
    assert stderr.endswith("a real warning\n")


_ONEDNN_PROBE = (
    "import os, sys\n"
    "from slowfast_tf.utils import tf_startup\n"
    "set_here = tf_startup.prefer_onednn()\n"
    "tf_startup.quiet_tf_startup()\n"
    "import tensorflow as tf\n"
    "tf.constant(1.0) + 1.0\n"
    "assert not tf_startup.prefer_onednn()  # TF is imported now: a no-op\n"
    "print(set_here, os.environ.get('TF_ENABLE_ONEDNN_OPTS'), tf_startup.onednn_enabled())\n"
)


@pytest.mark.skipif(not tf_startup.is_x86_64(), reason="oneDNN is preferred on x86-64 only")
@pytest.mark.parametrize(
    "user_value, expected", [(None, "True 1 True"), ("0", "False 0 False"), ("1", "False 1 True")]
)
def test_prefer_onednn_turns_it_on_unless_the_user_chose(user_value, expected):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    if user_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_value
    out = _python(_ONEDNN_PROBE, env)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split("\n")[-2] == expected
    stderr = out.stderr.decode()
    if user_value is None and not tf_startup.cuda_driver_loadable():
        # Turned on here: TF's duplicated notice is dropped (run_context names the kernels).
        assert "oneDNN custom operations" not in stderr, stderr
