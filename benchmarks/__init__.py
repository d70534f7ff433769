"""Benchmarks: each prints its figures against the naive way, measured in the same run."""

from __future__ import annotations

import sys


def help_argument(doc: str | None) -> None:
    """``-h``/``--help`` prints the benchmark's docstring (what it measures, how to run it), and exits."""
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print((doc or "").strip())
        raise SystemExit(0)


def count_argument(doc: str | None, default: int) -> int:
    """The benchmark's one optional argument, a count (``default`` without it); ``-h``/``--help``
    prints the benchmark's docstring, anything else that is not a positive whole number says how to run it."""
    help_argument(doc)
    arguments = sys.argv[1:]
    if not arguments:
        return default
    if len(arguments) == 1 and arguments[0].isdigit() and int(arguments[0]) > 0:
        return int(arguments[0])
    spec = sys.modules["__main__"].__spec__
    name = spec.name if spec is not None else "benchmarks.<name>"
    sys.stderr.write(f"usage: python -m {name} [COUNT]   (default {default}; --help says what it measures)\n")
    raise SystemExit(2)
