"""The SlowFast paper's Table 5 ablations as preset overrides, with their GFLOPs.

``python -m slowfast_tf.models.ablations`` prints one row per ablation of SlowFast R50 4x16
(alpha 8, beta 1/8, the paper's ablation backbone): parameters and multiply-adds of one 256x256
view, counted analytically by ``slowfast_tf.models.common.flops`` (nothing runs, ~1 min on a CPU),
next to the paper's number where it prints one. Every variant is an override of an existing
preset, so ``build_model(preset, **overrides)`` builds the same model for training.
"""

import sys

from absl import flags

from slowfast_tf.models.common.flops import CONVENTIONS, count_flops, count_params
from slowfast_tf.models.slowfast.slowfast_presets import build_model

# (name, paper table, preset, overrides, paper GFLOPs at 256^2 or None).
ABLATIONS = (
    ("Slow-only", "5a", "slow_r50_4x16", {}, 27.3),
    ("Fast-only", "5a", "fast_r50_32x2", {}, 6.4),
    ("SlowFast, no lateral", "5a", "slowfast_r50_4x16", {"lateral_type": "none"}, 34.2),
    ("TtoC, sum", "5a", "slowfast_r50_4x16", {"lateral_type": "time_to_channel_sum"}, 34.2),
    ("TtoC, concat", "5a", "slowfast_r50_4x16", {"lateral_type": "time_to_channel"}, 34.3),
    ("T-sample", "5a", "slowfast_r50_4x16", {"lateral_type": "time_strided_sample"}, 34.9),
    ("T-conv (default)", "5a", "slowfast_r50_4x16", {}, 36.1),
    ("beta = 1/4", "5b", "slowfast_r50_4x16", {"beta_inv": 4}, None),
    ("beta = 1/16", "5b", "slowfast_r50_4x16", {"beta_inv": 16}, None),
    ("beta = 1/32", "5b", "slowfast_r50_4x16", {"beta_inv": 32}, None),
    ("RGB, half spatial, beta = 1/4", "5c", "slowfast_r50_4x16",
     {"beta_inv": 4, "fast_resolution": "half"}, 34.4),
    ("gray-scale", "5c", "slowfast_r50_4x16", {"fast_input": "grayscale"}, 34.1),
    ("time diff (gray)", "5c", "slowfast_r50_4x16",
     {"fast_input": "grayscale_time_difference"}, 34.2),
    ("optical flow (2 ch)", "5c", "slowfast_r50_4x16", {"fast_input": "optical_flow"}, 35.1),
)  # fmt: skip


def measure(name=None, image_size=256, convention="paper", num_classes=400, **extra):
    """GFLOPs and parameters of the ablations.

    Args:
        name: None (all rows) or one row name of ``ABLATIONS``.
        image_size: int, square view side (the paper reports 256).
        convention: ``"paper"`` (BN not counted, as the paper's tables) or ``"fvcore"``.
        num_classes: int, head classes (400 = Kinetics).
        **extra: overrides applied to every row (e.g. ``depth=18, width=8`` for a tiny check).

    Returns:
        list of dicts ``{"name", "table", "preset", "overrides", "gflops", "params", "paper"}``.
    """
    rows = [r for r in ABLATIONS if name is None or r[0] == name]
    if not rows:
        names = [r[0] for r in ABLATIONS]
        raise ValueError(f"`name` must be one of {names}. Received: name={name!r}")
    out = []
    for row_name, table, preset, overrides, paper in rows:
        kwargs = {**overrides, **extra}
        if kwargs.get("fast_resolution") == "half":
            # Its fast head pools the whole half-size res5 grid, so the slow head must pool to
            # 1x1 too: build it for the measured view (a 0.003 GF smaller head count).
            kwargs.setdefault("train_crop_size", image_size)
        model = build_model(preset, num_classes=num_classes, **kwargs)
        flops = count_flops(model, image_size=image_size, convention=convention)
        out.append(
            dict(name=row_name, table=table, preset=preset, overrides=overrides,
                 gflops=flops / 1e9, params=count_params(model), paper=paper)
        )  # fmt: skip
    return out


def format_table(rows):
    """Markdown table of ``measure`` rows."""
    lines = [
        "| Table | variant | overrides | params | GFLOPs | paper |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ov = ", ".join(f"{k}={v!r}" for k, v in r["overrides"].items()) or "-"
        paper = "-" if r["paper"] is None else f"{r['paper']:.1f}"
        lines.append(
            f"| {r['table']} | {r['name']} | `{r['preset']}` {ov} | {r['params'] / 1e6:.2f}M "
            f"| {r['gflops']:.2f} | {paper} |"
        )
    return "\n".join(lines)


_FLAGS = flags.FlagValues()
flags.DEFINE_integer("image_size", 256, "Square view side.", flag_values=_FLAGS)
flags.DEFINE_enum("convention", "paper", CONVENTIONS, "FLOP convention.", flag_values=_FLAGS)
flags.DEFINE_string("name", None, "Only this row (default: all).", flag_values=_FLAGS)


def main(argv=None):
    argv = sys.argv if argv is None else argv
    try:
        _FLAGS(argv)
        rows = measure(_FLAGS.name, _FLAGS.image_size, _FLAGS.convention)
    except (flags.Error, ValueError) as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
