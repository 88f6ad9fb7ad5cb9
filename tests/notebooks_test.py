"""The quickstart notebook is well-formed, in sync with its generator, and runs end to end.

The run test executes the notebook's code cells, concatenated, in a fresh Python subprocess
(cwd = a temp dir, so nothing depends on the repository being the working directory) and reads
back a few values the notebook computed. No Jupyter or nbformat is needed.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")
# SlowFast R50 8x8 with a 400-class head (PySlowFast / fvcore count: 34.57 M).
R50_8X8_PARAMS = 34_566_488
# On a busy 2-core CI machine the notebook takes ~1-2 minutes; the margin is for contention.
RUN_TIMEOUT_S = 420

# Executes the code cells in one namespace and writes the checked values as JSON.
_DRIVER = textwrap.dedent("""\
    import json, linecache, sys
    with open(sys.argv[1], encoding="utf-8") as f:
        notebook = json.load(f)
    code = "\\n\\n".join(
        f"# ---- {cell['id']} ----\\n" + "".join(cell["source"])
        for cell in notebook["cells"] if cell["cell_type"] == "code"
    )
    # Registered source: the traceback then prints the failing line itself.
    filename = "<notebook code cells>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(code, filename, "exec"), namespace)
    except BaseException:
        import traceback
        frames = traceback.extract_tb(sys.exc_info()[2])
        lines = [frame.lineno for frame in frames if frame.filename == filename]
        if lines:
            markers = [l for l in code.splitlines()[: lines[-1]] if l.startswith("# ---- ")]
            print(f"notebook failed in {markers[-1][7:-5]}", file=sys.stderr)
        # The traceback module reads linecache; the interpreter's own printer would not.
        traceback.print_exc()
        sys.exit(1)
    if len(sys.argv) < 3:
        sys.exit(0)
    result = {
        "r50_params": namespace["r50_params"],
        "r50_gflops": {str(k): v for k, v in namespace["r50_gflops"].items()},
        "paper_gflops": namespace["paper_gflops"],
        "top_k": namespace["TOP_K"],
        "top_k_labels": namespace["top_k_labels"],
        "top_k_probabilities": [float(p) for p in namespace["top_k_probabilities"]],
        "classes": list(namespace["CLASSES"]),
        "eval_results": namespace["eval_results"],
        "predict_windows": [[float(s), float(e)] for s, e in
                            zip(namespace["prediction"].starts, namespace["prediction"].ends)],
        "predict_features": list(namespace["prediction"].features.shape),
        "detection_probabilities": namespace["detection_probabilities"].tolist(),
        "num_actors": len(namespace["actors"]),
        "work_dir_exists": __import__("os").path.exists(namespace["WORK_DIR"]),
    }
    with open(sys.argv[2], "w") as f:
        json.dump(result, f, default=float)  # numpy scalars -> float
""")


def load_notebook():
    with open(NOTEBOOK, encoding="utf-8") as f:
        return json.load(f)


def test_notebook_is_valid_nbformat4_without_outputs():
    notebook = load_notebook()
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 5
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert set(kinds) == {"markdown", "code"} and kinds[0] == "markdown"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(set(ids)) == len(ids)  # nbformat 4.5 requires unique cell ids
    for cell in notebook["cells"]:
        assert isinstance(cell["source"], list) and cell["metadata"] == {}
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            compile("".join(cell["source"]), cell["id"], "exec")  # every cell parses


def test_notebook_matches_generator():
    sys.path.insert(0, os.path.join(ROOT, "notebooks"))
    try:
        import build_quickstart
    finally:
        sys.path.pop(0)
    with open(NOTEBOOK, encoding="utf-8") as f:
        committed = f.read()
    assert committed == build_quickstart.dumps(build_quickstart.build_notebook()), (
        "notebooks/quickstart.ipynb is stale: run python notebooks/build_quickstart.py"
    )


def run_notebook(notebook_path, tmp_path, *extra_args, timeout=RUN_TIMEOUT_S):
    """Runs the notebook's code cells in a fresh interpreter with cwd = `tmp_path`."""
    driver = tmp_path / "run_notebook.py"
    driver.write_text(_DRIVER)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, str(driver), str(notebook_path), *map(str, extra_args)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_runner_reports_the_failing_cell(tmp_path):
    notebook = {"cells": [
        {"cell_type": "code", "id": "cell-00", "source": ["x = 1\n", "y = 2"]},
        {"cell_type": "markdown", "id": "cell-01", "source": ["text"]},
        {"cell_type": "code", "id": "cell-02", "source": ["z = x + y\n", "raise ValueError(z)"]},
    ]}
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps(notebook))
    proc = run_notebook(path, tmp_path, timeout=60)
    assert proc.returncode == 1
    assert "notebook failed in cell-02" in proc.stderr
    assert "raise ValueError(z)" in proc.stderr and "ValueError: 3" in proc.stderr


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    result_file = tmp_path / "result.json"
    proc = run_notebook(NOTEBOOK, tmp_path, result_file)
    assert proc.returncode == 0, f"notebook failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    result = json.loads(result_file.read_text())

    assert result["r50_params"] == R50_8X8_PARAMS
    # fvcore's published SlowFast 8x8 R50 numbers and the paper's Table 2 (65.7 GF).
    assert round(result["r50_gflops"]["224"], 2) == 50.58
    assert round(result["r50_gflops"]["256"], 2) == 66.07
    assert round(result["paper_gflops"], 1) == 65.7
    assert len(result["top_k_labels"]) == result["top_k"] == 2
    assert set(result["top_k_labels"]) <= set(result["classes"])
    probabilities = result["top_k_probabilities"]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    evaluation = result["eval_results"]  # evaluate_multiview summary, 2 clips per video
    assert (evaluation["num_videos"], evaluation["num_views"]) == (6, 12)
    assert 0.0 <= evaluation["top1"] <= 100.0
    # 1.2 s = 36 frames; 32-frame windows (16 x rate 2): the one at 0 and the one ending at 36.
    assert result["predict_windows"] == [[0.0, 32 / 30], [4 / 30, 1.2]]
    assert result["predict_features"] == [2, 320]
    # Section 6: one row of 6 sigmoid probabilities per actor box (2-3 actors per clip).
    detection = np.array(result["detection_probabilities"])
    assert detection.shape == (result["num_actors"], 6) and 2 <= result["num_actors"] <= 3
    assert np.all((detection > 0) & (detection < 1))
    assert not result["work_dir_exists"]  # the last cell cleans up
