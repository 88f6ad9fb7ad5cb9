"""Every shell command shown in README.md code blocks and configs/*.flags headers is run by a test.

`COVERAGE` maps each documented command to the test that runs its form at tiny size (and every
``--flag`` of the command must appear in that test's file), or marks it exempt with the reason it
cannot run here. A new command in the README or a flagfile header fails
`test_every_documented_command_is_covered_or_exempt` until it gets an entry. The train.py commands
that were not run anywhere (the "No data yet" smoke command and the synthetic flagfiles) are run
below.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Command prefix (after joining continuation lines) -> "path::test_name" or "EXEMPT: reason".
# The longest matching prefix wins.
COVERAGE = {
    "bash scripts/run_synthetic.sh": "EXEMPT: the ~8-minute main job (CI runs it separately); "
    "each of its steps is a command covered here",
    "bash scripts/run_synthetic_ava.sh":
        "tests/train_detection_test.py::test_run_synthetic_ava_script_tiny",
    "python train.py --flagfile=configs/synthetic_ava_":
        "tests/train_detection_test.py::test_run_synthetic_ava_script_tiny",
    "python train.py --flagfile=configs/ava_slowfast_r50_32x2.flags": "EXEMPT: real AVA records "
    "and converted Kinetics weights; tests/train_detection_test.py builds its detector from it",
    "python -m slowfast_tf.data.ava.ava_synthetic":
        "tfrecords_tools/ava_test.py::test_synthetic_files_follow_the_ava_layout",
    "python -m tfrecords_tools convert-ava":
        "tfrecords_tools/ava_test.py::test_convert_videos_and_frames_then_pipeline_and_eval",
    "python -m slowfast_tf.training.ava_eval":
        "slowfast_tf/training/ava_eval_test.py::test_evaluate_files_and_cli",
    "bash scripts/test.sh": "EXEMPT: runs this test suite",
    "python -m slowfast_tf.convert --source pytorchvideo":
        "slowfast_tf/convert/main_test.py::test_convert_and_verify",
    "python -m slowfast_tf.convert --source caffe2": "EXEMPT: needs a downloaded MODEL_ZOO .pkl; the "
    "Caffe2 reader is tested in slowfast_tf/convert/checkpoints_test.py, the CLI path by the "
    "pytorchvideo command",
    "python -m slowfast_tf.convert --source pyslowfast":
        "slowfast_tf/convert/main_test.py::test_num_classes_drops_the_head",
    "python -m slowfast_tf.convert ...": "EXEMPT: elided (\"...\") pointer to the README commands",
    "python -m tfrecords_tools convert --input kinetics400/train.csv": "EXEMPT: needs Kinetics "
    "videos; the Kinetics CSV reader and clip lookup are tested in tfrecords_tools/convert_test.py "
    "(test_sources)",
    "python -m tfrecords_tools convert --input train.csv --path_prefix":
        "tfrecords_tools/convert_test.py::test_convert_failures_manifest_and_label_reuse",
    "python -m tfrecords_tools convert --input /data/my_videos/val":
        "tfrecords_tools/convert_test.py::test_convert_failures_manifest_and_label_reuse",
    "python -m tfrecords_tools convert --input list.csv --output_dir gs://bucket/k400 --runner beam":
        "tfrecords_tools/beam_runner_test.py::test_beam_runner_options_checked_without_network",
    "python -m tfrecords_tools convert --input_format charades":
        "tfrecords_tools/charades_test.py::test_convert_train_map_end_to_end",
    "python -m tfrecords_tools inspect":
        "tfrecords_tools/convert_test.py::test_inspect_prints_and_writes_sheet",
    "python train.py --flagfile=configs/k400": "EXEMPT: real Kinetics-400 records; the flagfile "
    "is parsed and checked by tests/train_configs_test.py",
    "python train.py --flagfile=configs/charades": "EXEMPT: real Charades records and converted "
    "Kinetics weights; the flagfile is parsed and checked by tests/train_configs_test.py",
    "python train.py --model=slowfast_r50_8x8":
        "tests/readme_commands_test.py::test_readme_no_data_command_runs_cleanly",
    "python train.py --flagfile=configs/synthetic_slowfast.flags":
        "tests/readme_commands_test.py::test_synthetic_slowfast_command_rejects_bad_labels",
    "python train.py --flagfile=configs/synthetic_slow.flags":
        "tests/readme_commands_test.py::test_synthetic_slow_command_survives_a_truncated_shard",
    "python export.py":
        "slowfast_tf/serving/export_main_test.py::test_readme_export_command_tiny_reads_the_sidecar",
    "docker run": "EXEMPT: no Docker engine on the build machines (see the README)",
    "python -m slowfast_tf.serving.client": "slowfast_tf/serving/client_test.py::test_command_line",
    "python export.py --model_file":
        "slowfast_tf/serving/detection_signatures_test.py::test_export_py_exports_a_detector",
    "python -m slowfast_tf.serving.client --video x.mp4 --boxes":
        "slowfast_tf/serving/detection_serving_test.py::test_command_line_boxes",
    "python -m slowfast_tf.predict my_video.mp4":
        "slowfast_tf/predict_test.py::test_windows_json_csv_and_printed_report",
    "python -m slowfast_tf.predict videos/":
        "slowfast_tf/predict_test.py::test_directory_preset_weights_gif_and_a_bad_video",
    "python -m slowfast_tf.predict my_video.mp4 --model=/ckpt/ava_sf_r50/model.keras --boxes":
        "slowfast_tf/predict_detection_test.py::test_json_csv_and_printed_report",
}


def _join_continuations(lines):
    commands, current = [], ""
    for line in lines:
        line = line.rstrip()
        if current:
            current += " " + line.strip()
        else:
            current = line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current:
            commands.append(current)
        current = ""
    return commands


def _strip_comment(command):
    return re.sub(r"\s+#\s.*$", "", command).strip()


def documented_commands():
    """(source, command) for every command in README ```bash blocks and flagfile headers."""
    found = []
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
        found += [("README.md", _strip_comment(c)) for c in _join_continuations(lines)]
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.flags"))):
        header = []
        with open(path) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                header.append(line[1:].strip())
        text = "\n".join(header)
        for start in re.finditer(r"(?:^|\s)((?:python|bash) \S.*)", text, flags=re.M):
            rest = text[start.start(1):].splitlines()
            command = _join_continuations(rest)[0]
            found.append((os.path.relpath(path, REPO), _strip_comment(command)))
    return found


def _coverage(command):
    matches = [p for p in COVERAGE if command.startswith(p)]
    return COVERAGE[max(matches, key=len)] if matches else None


def test_every_documented_command_is_covered_or_exempt():
    commands = documented_commands()
    sources = {s for s, _ in commands}
    assert "README.md" in sources and "configs/synthetic_slowfast.flags" in sources
    assert len([c for s, c in commands if s == "README.md"]) >= 15
    used = set()
    for source, command in commands:
        entry = _coverage(command)
        assert entry is not None, f"{source}: no test runs `{command}`; add one to COVERAGE"
        used.add(entry)
        if entry.startswith("EXEMPT: "):
            continue
        path, test_name = entry.split("::")
        with open(os.path.join(REPO, path)) as f:
            test_source = f.read()
        assert re.search(rf"^def {test_name}\(", test_source, flags=re.M), entry
        if path == "tests/readme_commands_test.py":
            continue  # The tests below run the extracted command itself, plus tiny-size flags.
        # Every option of the documented command is exercised by the covering test file.
        for flag in re.findall(r"(?:^|\s)(--[a-z][\w-]*)", command):
            assert flag in test_source, f"{source}: `{command}` uses {flag}, {path} never does"
    unused = [p for p, v in COVERAGE.items() if v not in used]
    assert not unused, f"COVERAGE entries that match no documented command: {unused}"


def _run(args, tmp_path, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _readme_command(prefix):
    (command,) = [c for s, c in documented_commands() if s == "README.md" and c.startswith(prefix)]
    return command


# Lines TF prints at start-up on a machine without a CUDA driver (twice, from two libraries).
_NOISE = ("failed call to cuInit", "Could not find cuda drivers", "cpu_feature_guard")


@pytest.mark.slow
def test_readme_no_data_command_runs_cleanly(tmp_path):
    command = _readme_command("python train.py --model=slowfast_r50_8x8")
    # Used to fail: warmup_epochs=34 > epochs=1. Now clamped with a warning.
    args = [sys.executable] + [
        f"--model_dir={tmp_path / 'smoke'}" if a.startswith("--model_dir=") else a
        for a in _split(command)[1:]
    ]
    assert "--epochs=1" in args and "--fake_data" in args
    out = _run(args + ["--verbose=0", "--notensorboard"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # On AVX-512 CPUs (oneDNN on) a Pad feeding a Conv3D made Grappler drop every fusion.
    assert "remapper failed" not in out.stderr, out.stderr[-3000:]
    for name in ("final.weights.h5", "final.clip_spec.json", "model.keras", "flags.txt",
                 "flags.json"):
        assert (tmp_path / "smoke" / name).exists(), name
    # The clip spec it trained with travels in model.keras and next to the weights.
    import zipfile

    from slowfast_tf.clip_spec import CLIP_SPECS, ClipSpec

    with zipfile.ZipFile(tmp_path / "smoke" / "model.keras") as archive:
        saved = json.loads(archive.read("config.json"))["config"]["clip_spec"]
    assert ClipSpec.from_dict(saved) == CLIP_SPECS["slowfast_8x8"]
    assert ClipSpec.load(str(tmp_path / "smoke" / "final.clip_spec.json")) == CLIP_SPECS["slowfast_8x8"]
    assert "warming up for 1 epochs" in out.stderr
    for noise in _NOISE:
        assert noise not in out.stderr, out.stderr[:2000]

    # Evaluating weights that do not exist: one line, exit 2 (was an h5py traceback).
    missing = tmp_path / "nowhere.weights.h5"
    out = _run(args + ["--mode=eval", f"--eval_weights={missing}"], tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: No weights to evaluate at {missing} (train first, or pass --eval_weights)."
    )
    assert "Traceback" not in out.stderr


def _split(command):
    import shlex

    return shlex.split(command)


def _flagfile_command(name, workdir):
    (command,) = [c for s, c in documented_commands() if s == f"configs/{name}.flags"]
    command = command.replace("$W", str(workdir))
    return [sys.executable] + _split(command)[1:]


def _write_synthetic_records(records_dir, labels, truncate=None):
    from slowfast_tf.testing.fake_records import fake_video_record, write_records

    os.makedirs(records_dir, exist_ok=True)
    with open(os.path.join(records_dir, "classes.txt"), "w") as f:
        f.write("\n".join(f"c{i}" for i in range(6)) + "\n")
    for split in ("train", "test"):
        videos = [fake_video_record(40, 64, 64, (label,), video_id=f"{split}{i}")
                  for i, label in enumerate(labels)]
        path = write_records(os.path.join(records_dir, f"{split}-00000-of-00002.tfrecord"), videos)
        write_records(os.path.join(records_dir, f"{split}-00001-of-00002.tfrecord"), videos)
        if truncate and split == "train":
            data = open(path, "rb").read()
            with open(path, "wb") as f:
                f.write(data[:-truncate])


@pytest.mark.slow
def test_synthetic_slowfast_command_rejects_bad_labels(tmp_path):
    """Under XLA (on in this flagfile) a label >= num_classes used to train to NaN with exit 0."""
    _write_synthetic_records(tmp_path / "records", labels=[1, 9, 2, 3])
    args = _flagfile_command("synthetic_slowfast", tmp_path)
    assert "--jit_compile" in open(os.path.join(REPO, "configs/synthetic_slowfast.flags")).read()
    out = _run(args + ["--epochs=1", "--num_train_examples=4", "--batch_size=2", "--verbose=0",
                       "--notensorboard"], tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: \S+/records/train-0000[01]-of-00002\.tfrecord record 1 \(video/id "
                        r"train1\): label \[9\] is out of range for num_classes=6.*", last), last
    assert not (tmp_path / "slowfast" / "final.weights.h5").exists()


@pytest.mark.slow
def test_synthetic_slow_command_survives_a_truncated_shard(tmp_path):
    """Record counting (--num_train_examples=0) used to crash on a truncated shard."""
    _write_synthetic_records(tmp_path / "records", labels=[0, 1, 2, 3], truncate=50)
    args = _flagfile_command("synthetic_slow", tmp_path)
    out = _run(args + ["--epochs=1", "--num_train_examples=0", "--batch_size=2",
                       "--eval_batch_size=6", "--nojit_compile", "--verbose=0", "--notensorboard"],
               tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    shard = tmp_path / "records" / "train-00000-of-00002.tfrecord"
    assert f"{shard}: truncated or corrupt TFRecord shard: read 3 records" in out.stderr
    flags = json.loads((tmp_path / "slow" / "flags.json").read_text())
    assert flags["steps_per_epoch"] == 3  # (3 + 4 readable records) // 2
    summary = json.loads((tmp_path / "slow" / "eval_summary.json").read_text())
    assert summary["num_videos"] == 8 and summary["num_unlabelled"] == 0
