"""The built distributions: the sdist and wheel as a user gets them, installed into fresh environments.

These tests run only with ``-m package`` or ``EDGE_VLM_PACKAGE=1`` (``scripts/test-package``): they
build the distributions, install their dependencies into new venvs (one of them in an arm64 Debian
under emulation), and take minutes, which the default run should not pay.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
BUILD_TIMEOUT_S = 300.0
REPORT: list[str] = []  # how long each step took, printed at the end of the run


def _wanted(config: pytest.Config) -> bool:
    return (os.environ.get("EDGE_VLM_PACKAGE") == "1"
            or re.search(r"\bpackage\b", config.getoption("markexpr") or "") is not None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _wanted(config):
        return
    skip = pytest.mark.skip(reason="builds and installs the package: run with -m package or EDGE_VLM_PACKAGE=1 "
                            "(scripts/test-package)")
    for item in items:
        if item.get_closest_marker("package") is not None:
            item.add_marker(skip)


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return set(wheel.namelist())

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.read(name).decode()

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as sdist:
            return {member.name.split("/", 1)[1] for member in sdist.getmembers() if "/" in member.name}


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist, and the wheel built from it (as `python -m build` does), from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # setuptools' deprecations of what pyproject.toml says become failed builds at a set date
    deprecated = [line for line in (built.stdout + built.stderr).splitlines()
                  if "deprecat" in line.lower() and re.search(r"project\.|tool\.setuptools|pyproject", line)]
    assert not deprecated, deprecated
    (sdist,), (wheel,) = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    return Dist(sdist, wheel)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("package")
        for line in REPORT:
            terminalreporter.write_line(line)
