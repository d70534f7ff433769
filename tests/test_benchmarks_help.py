"""Every benchmark says what it measures and how to run it (issue 14: `--help` ended in a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help_says_what_the_benchmark_measures(name: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], capture_output=True, text=True,
                          check=False, timeout=60, cwd=Path(__file__).parents[1])
    assert (done.returncode, done.stderr) == (0, "")
    assert f"Run: .venv/bin/python -m benchmarks.{name}" in done.stdout  # its docstring, which says how


def test_a_count_that_is_not_one_says_how_to_run_it() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.skipped_frame", "many"], capture_output=True, text=True,
                          check=False, timeout=60, cwd=Path(__file__).parents[1])
    assert done.returncode == 2
    assert done.stderr == ("usage: python -m benchmarks.skipped_frame [COUNT]   (default 200; --help says what it "
                           "measures)\n")
