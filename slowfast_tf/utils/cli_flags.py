"""One command-line convention for every entry point: absl flags, snake_case, JSON overrides.

Vocabulary (docs/DESIGN.md, "Command lines"):

* flag names are snake_case (``--short_side``, ``--num_classes``);
* a command's main output is ``--output_dir`` (a directory it fills) or ``--output_file`` (the
  one file it writes); ``train.py`` keeps ``--model_dir`` (read back by ``--mode=eval``);
* overrides of a preset are one JSON dict: ``--model_overrides='{"width": 16}'`` (also
  ``--data_overrides``);
* booleans are absl booleans: ``--verify`` / ``--noverify``, ``--progress`` / ``--noprogress``.

Old spellings (``--short-side``, ``--out``, ``--override KEY=VALUE`` ...) are still accepted for
one release: ``rewrite_deprecated`` rewrites them before absl parses and prints one deprecation
line per flag on stderr.

``parse`` parses a command's own ``flags.FlagValues`` (so that library modules with a
``__main__`` define no global flags) and turns absl's errors into one-line ``ValueError``s.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable, Mapping, Sequence

from absl import flags

OVERRIDE_FLAG = "--override"
OVERRIDES_TARGET = "--model_overrides"


def _warn(prog: str, old: str, new: str, stream) -> None:
    print(
        f"{prog}: warning: {old} is deprecated, use {new} (the old spelling will be removed in "
        "the next release).",
        file=stream,
    )


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value  # a bare string such as norm=sync_batch_norm


def rewrite_deprecated(
    argv: Sequence[str],
    renames: Mapping[str, str] | None = None,
    prog: str = "",
    stream=None,
) -> list[str]:
    """Rewrites deprecated flag spellings in ``argv`` (without the program name).

    Args:
        argv: command-line arguments after the program name; everything after a bare ``--`` is
            left alone (it belongs to another parser, e.g. Beam's pipeline options).
        renames: old flag -> new flag, e.g. ``{"--out": "--output_dir"}``; applied after the
            generic rule, so keys may use either ``-`` or ``_``. A value of the form
            ``--noX`` turns an old store-true flag into an absl negated boolean.
        prog: program name for the message.
        stream: where the deprecation lines go (default ``sys.stderr``).

    Returns:
        the rewritten list. Generic rules: ``--kebab-case`` becomes ``--kebab_case``; every
        ``--override KEY=VALUE`` (VALUE a Python literal) is folded into one
        ``--model_overrides=<JSON>``.
    """
    stream = sys.stderr if stream is None else stream
    renames = {"--" + k.lstrip("-").replace("-", "_"): v for k, v in (renames or {}).items()}
    out: list[str] = []
    overrides: dict = {}
    warned: set[str] = set()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if not arg.startswith("--") or len(arg) == 2:
            out.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name == OVERRIDE_FLAG:
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError("--override needs KEY=VALUE. Received: nothing")
                value = args[i + 1]
                i += 1
            key, sep, literal = value.partition("=")
            if not sep or not key.isidentifier():
                raise ValueError(f"--override must look like KEY=VALUE. Received: {value!r}")
            overrides[key] = _literal(literal)
            if name not in warned:
                _warn(prog, "--override KEY=VALUE", f"{OVERRIDES_TARGET}='{{\"KEY\": VALUE}}' (JSON)", stream)
                warned.add(name)
            i += 1
            continue
        new = "--" + name[2:].replace("-", "_")
        new = renames.get(new, new)
        if new != name:
            if name not in warned:
                _warn(prog, name, new, stream)
                warned.add(name)
            out.append(new + eq + value)
        else:
            out.append(arg)
        i += 1
    if overrides:
        tail = out.index("--") if "--" in out else len(out)
        out.insert(tail, f"{OVERRIDES_TARGET}={json.dumps(overrides)}")
    return out


def json_dict(text: str | None, flag: str) -> dict:
    """Parses a JSON-object flag value (``--model_overrides``); a one-line ValueError if not."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--{flag} must be a JSON object ({e.msg}). Received: {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--{flag} must be a JSON object. Received: {text!r}")
    return value


def parse(
    argv: Sequence[str] | None,
    define: Callable[[flags.FlagValues], None],
    prog: str,
    renames: Mapping[str, str] | None = None,
    description: str = "",
    max_positional: int | None = 0,
) -> tuple[flags.FlagValues, list[str]]:
    """Parses ``argv`` into a fresh ``FlagValues`` that ``define`` fills.

    Args:
        argv: arguments after the program name (default ``sys.argv[1:]``).
        define: ``define(flag_values)`` declares the command's flags.
        prog: program name for help and messages (``python -m tfrecords_tools convert``).
        renames: deprecated spellings, as in ``rewrite_deprecated``.
        description: first line of ``--help``.
        max_positional: how many positional arguments the command takes (None: any).

    Returns:
        ``(flag_values, positional_args)``.

    Raises:
        ValueError: one line, for an unknown flag, a bad value or a missing required flag.
        SystemExit(0): after printing ``--help`` / ``--helpfull`` (flags with their defaults).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    head, tail = (argv[: argv.index("--")], argv[argv.index("--") :]) if "--" in argv else (argv, [])
    head = rewrite_deprecated(head, renames, prog)
    fv = flags.FlagValues()
    define(fv)
    if any(a in ("-h", "--help", "--helpfull", "-?") for a in head):
        # absl groups flags under the defining module's name; one flat list reads better here.
        body = [line for line in fv.get_help(include_special_flags=False).splitlines()
                if line.startswith(" ")]
        print(f"usage: {prog} [flags]\n" + (f"\n{description}\n" if description else ""))
        print("\n".join(body))
        raise SystemExit(0)
    try:
        positional = fv([prog, *head])[1:]
    except flags.Error as e:
        raise ValueError(" ".join(str(e).split())) from None
    if max_positional is not None and len(positional) > max_positional:
        raise ValueError(f"unexpected arguments: {' '.join(positional)} (see {prog} --help)")
    return fv, positional + tail


def run(main: Callable[[list[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Calls ``main(argv)``; a ValueError or OSError (bad flag, bad input) becomes one
    ``error: ...`` line on stderr and exit status 2 (the ``__main__`` of a command)."""
    try:
        main(None if argv is None else list(argv))
    except (ValueError, OSError) as e:
        text = str(e).strip().splitlines()
        print(f"error: {text[0] if text else type(e).__name__}", file=sys.stderr)
        return 2
    return 0
