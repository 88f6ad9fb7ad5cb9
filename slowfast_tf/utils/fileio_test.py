import os
import signal
import subprocess
import sys
import textwrap

import pytest

from slowfast_tf.utils import fileio


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(".tmp-"))


def test_write_text_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "flags.txt"
    fileio.atomic_write_text(target, "old\n")
    fileio.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert _leftovers(tmp_path) == []


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("complete")
    with pytest.raises(RuntimeError, match="boom"):
        with fileio.atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "complete"
    assert _leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_for_extension_checking_writers(tmp_path):
    target = tmp_path / "final.weights.h5"
    with fileio.atomic_path(target) as tmp:
        assert tmp.endswith("final.weights.h5") and tmp != str(target)
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"x")
    assert target.read_bytes() == b"x"


def test_writer_that_creates_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not create"):
        with fileio.atomic_path(tmp_path / "model.keras"):
            pass
    assert not (tmp_path / "model.keras").exists()


def test_read_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Received: mode='r'"):
        with fileio.atomic_open(tmp_path / "x", "r"):
            pass


def test_sigkill_while_overwriting_keeps_the_old_file(tmp_path):
    """A process killed mid-write (the case that used to leave a 0-byte file) leaves the old bytes."""
    target = tmp_path / "manifest.json"
    target.write_text('{"complete": true}')
    script = textwrap.dedent(
        f"""
        import sys, time
        from slowfast_tf.utils import fileio
        with fileio.atomic_open({str(target)!r}, "w") as f:
            f.write("partial")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(fileio.__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_text() == '{"complete": true}'
