"""The shared command-line helpers: deprecated spellings, JSON overrides, one-line flag errors."""

import io
import json

import pytest
from absl import flags

from slowfast_tf.utils import cli_flags


def _define(fv):
    flags.DEFINE_string("output_dir", None, "Output directory.", flag_values=fv)
    flags.DEFINE_integer("short_side", 256, "Short side.", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Progress bar.", flag_values=fv)
    flags.DEFINE_string("model_overrides", "{}", "JSON dict.", flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def test_rewrite_deprecated_spellings_warns_once_per_flag():
    stream = io.StringIO()
    argv = ["--out", "a", "--short-side=3", "--no-progress", "--override", "width=16",
            "--override=norm=sync_batch_norm", "--short-side", "4", "clip.mp4",
            "--", "--out", "--beam-flag"]  # fmt: skip
    renames = {"--out": "--output_dir", "--no-progress": "--noprogress"}
    new = cli_flags.rewrite_deprecated(argv, renames, "prog", stream)
    assert new == ["--output_dir", "a", "--short_side=3", "--noprogress", "--short_side", "4",
                   "clip.mp4", '--model_overrides={"width": 16, "norm": "sync_batch_norm"}',
                   "--", "--out", "--beam-flag"]  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("prog: warning: ") for line in lines)
    assert "--out is deprecated, use --output_dir" in lines[0]
    assert "--override KEY=VALUE is deprecated" in lines[3]


def test_new_spellings_pass_through_silently():
    stream = io.StringIO()
    argv = ["--output_dir=a", "--noprogress", '--model_overrides={"a": 1}', "-h", "x"]
    assert cli_flags.rewrite_deprecated(argv, {"--out": "--output_dir"}, "p", stream) == argv
    assert stream.getvalue() == ""


def test_bad_override_is_a_value_error():
    with pytest.raises(ValueError, match="--override must look like KEY=VALUE. Received: 'x'"):
        cli_flags.rewrite_deprecated(["--override", "x"], stream=io.StringIO())
    with pytest.raises(ValueError, match="needs KEY=VALUE"):
        cli_flags.rewrite_deprecated(["--override"], stream=io.StringIO())


def test_parse_gives_flags_positionals_and_one_line_errors(capsys):
    fv, rest = cli_flags.parse(
        ["--out", "o", "pattern", "--override", "depth=18"], _define, "prog",
        {"--out": "--output_dir"}, max_positional=1,
    )
    assert (fv.output_dir, fv.short_side, rest) == ("o", 256, ["pattern"])
    assert json.loads(fv.model_overrides) == {"depth": 18}
    assert "--out is deprecated" in capsys.readouterr().err
    for argv, message in [
        (["--output_dir=o", "--bogus"], "Unknown command line flag 'bogus'"),
        (["--output_dir=o", "--short_side=x"], "flag --short_side=x: invalid literal"),
        ([], "Flag --output_dir must have a value other than None"),
        (["--output_dir=o", "a", "b"], "unexpected arguments: a b"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            cli_flags.parse(argv, _define, "prog", max_positional=1)
        assert "\n" not in str(info.value)


def test_help_lists_flags_with_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        cli_flags.parse(["--help"], _define, "prog", description="Does a thing.")
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: prog" in text and "Does a thing." in text
    assert "--short_side: Short side." in text and "(default: '256')" in text


def test_json_dict_and_run():
    assert cli_flags.json_dict('{"width": 16}', "model_overrides") == {"width": 16}
    assert cli_flags.json_dict("", "model_overrides") == {}
    with pytest.raises(ValueError, match="--model_overrides must be a JSON object"):
        cli_flags.json_dict("[1]", "model_overrides")
    with pytest.raises(ValueError, match="--model_overrides must be a JSON object"):
        cli_flags.json_dict("width=16", "model_overrides")

    def main(argv):
        raise ValueError("bad input\nsecond line")

    assert cli_flags.run(main, []) == 2
