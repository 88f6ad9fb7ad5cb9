import pytest

from slowfast_tf.models import ablations


def test_tiny_rows_rank_as_the_paper():
    tiny = dict(depth=18, width=32, train_crop_size=64)
    names = ("SlowFast, no lateral", "TtoC, sum", "T-sample", "T-conv (default)", "gray-scale",
             "optical flow (2 ch)")
    rows = {
        name: ablations.measure(name, image_size=64, num_classes=4, **tiny)[0]["gflops"]
        for name in names
    }
    # A weight-free time-to-channel sum costs exactly what no lateral costs.
    assert rows["TtoC, sum"] == rows["SlowFast, no lateral"]
    assert rows["SlowFast, no lateral"] < rows["T-sample"] < rows["T-conv (default)"]
    assert rows["gray-scale"] < rows["optical flow (2 ch)"] < rows["T-conv (default)"]


def test_bad_row_name_is_one_line_exit_2(capsys):
    assert ablations.main(["prog", "--name=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `name` must be one of") and "\n" not in err


@pytest.mark.slow
def test_r50_256_gflops_match_paper_table5():
    # The README's ablation table command, one row per call (R50 at 256^2, paper convention).
    for name in ("SlowFast, no lateral", "TtoC, sum", "T-sample", "optical flow (2 ch)"):
        (row,) = ablations.measure(name)
        assert round(row["gflops"], 1) == row["paper"], (name, row["gflops"])
    assert ablations.main(["prog", "--name=T-conv (default)"]) == 0
