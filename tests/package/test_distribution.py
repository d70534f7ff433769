"""The sdist and wheel: what they hold, and the wheel installed and run as the README says, in a fresh
venv here and in an arm64 Debian bookworm root (the base of Armbian) under emulation."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_vlm import __version__
from edge_vlm.inference.vision.rknn import RKNN_LITE_RELEASE
from tests.package.conftest import REPO, REPORT, Dist
from tests.support import arm64

# each test's timeout covers building the distributions (the first test pays for them)
pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]

Run = Callable[[str], subprocess.CompletedProcess[str]]
README = (REPO / "README.md").read_text()
EXAMPLE = "config/edge_vlm.example.yaml"
DATA = {"edge_vlm/data/edge-vlm.service": "systemd/edge-vlm.service", "edge_vlm/data/edge_vlm.example.yaml": EXAMPLE}
COMMAND_TIMEOUT_S = 600.0


def source_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "edge_vlm"], cwd=REPO, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def readme_install_lines() -> list[str]:
    """The README's commands that make the venv and install the wheel into it, without sudo."""
    lines = [line.removeprefix("sudo ").split("  #")[0].strip() for line in README.splitlines()
             if line.startswith(("sudo python3 -m venv /opt/edge-vlm", "sudo /opt/edge-vlm/bin/pip install ./edge_vlm-",
                                 "sudo /opt/edge-vlm/bin/pip install './edge_vlm-"))]
    assert len(lines) == 2, lines
    return lines


def test_the_wheel_holds_the_package_its_files_and_the_pinned_extras(dist: Dist) -> None:
    names = dist.wheel_names()
    assert {name for name in source_files() if not name.startswith("edge_vlm/data/")} <= names
    for packaged, source in DATA.items():  # data/ holds symlinks: the wheel has their contents
        assert dist.wheel_text(packaged) == (REPO / source).read_text()
    assert not [name for name in names if name.startswith("tests/")]
    metadata = dist.wheel_text(f"edge_vlm-{__version__}.dist-info/METADATA")
    assert dist.wheel.name == f"edge_vlm-{__version__}-py3-none-any.whl"
    assert "Requires-Python: >=3.10" in metadata.splitlines()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert dist.wheel_text(f"edge_vlm-{__version__}.dist-info/licenses/LICENSE") == (REPO / "LICENSE").read_text()
    assert (f'Requires-Dist: rknn-toolkit-lite2=={RKNN_LITE_RELEASE}; (platform_machine == "aarch64" and '
            'sys_platform == "linux" and python_version < "3.13") and extra == "rknn"') in metadata.splitlines()


def test_the_sdist_has_the_sources_and_the_documents_a_packager_needs(dist: Dist) -> None:
    names = dist.sdist_names()
    assert source_files() <= names
    assert {"pyproject.toml", "README.md", "LICENSE", "models/README.md", "docs/configuration.md", EXAMPLE,
            "systemd/edge-vlm.service"} <= names
    assert not [name for name in names if name.startswith("tests/")]  # the tests need the checkout


def test_the_readme_build_command_makes_the_same_wheel(dist: Dist, tmp_path: Path) -> None:
    build = next(line.split("  #")[0].strip() for line in README.splitlines()
                 if line.startswith("python3 -m pip wheel "))
    build = build.replace("python3", shlex.quote(sys.executable), 1)  # a Python with pip, as the README assumes
    checkout = tmp_path / "edge_vlm"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "*_cache", "__pycache__", "*.egg-info", "build", "dist", "_build"))
    done = subprocess.run(build, shell=True, cwd=checkout, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (checkout / "dist").glob("*.whl")
    built = Dist(dist.sdist, wheel)
    assert wheel.name == dist.wheel.name and built.wheel_names() == dist.wheel_names()
    metadata = f"edge_vlm-{__version__}.dist-info/METADATA"
    assert built.wheel_text(metadata) == dist.wheel_text(metadata)


def exercise(run: Run, bin_dir: str, wheel: str, where: str) -> None:
    """After the README's install: the demo extra, then --version, check, describe, the demo."""
    def ok(command: str) -> str:
        started = time.monotonic()
        done = run(command)
        assert done.returncode == 0, f"{command}: exit status {done.returncode}\n{done.stdout}\n{done.stderr}"
        shown = " ".join(command.removeprefix(bin_dir + "/").split()[:2])
        REPORT.append(f"{where}: {shown}: {time.monotonic() - started:.1f} s")
        return done.stdout

    ok(f"{bin_dir}/pip install -q --disable-pip-version-check '{wheel}[demo]'")
    assert ok(f"{bin_dir}/edge-vlm --version") == f"edge_vlm {__version__}\n"
    site = ok(f"{bin_dir}/python -c 'import edge_vlm, pathlib; print(pathlib.Path(edge_vlm.__file__).parent)'")
    package = site.strip()
    assert package.startswith(bin_dir.removesuffix("/bin"))  # the installed wheel, not a checkout
    assert ok(f"{bin_dir}/edge-vlm check -c {package}/data/edge_vlm.example.yaml").splitlines()[0].endswith(": valid")
    assert ok(f"{bin_dir}/edge-vlm describe {package}/samples/front_door.jpg") == "1 person; 1 face visible; daylight\n"
    demo = ok(f"{bin_dir}/edge-vlm demo")
    assert "Home Assistant discovered 4 devices" in demo and "edge_vlm/demo/status = 'offline'" in demo


@pytest.mark.timeout(COMMAND_TIMEOUT_S * 3)
def test_the_wheel_installs_and_runs_in_a_fresh_venv(dist: Dist, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=COMMAND_TIMEOUT_S)

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)

    exercise(run, str(venv / "bin"), str(dist.wheel), "this machine")


@pytest.mark.timeout(arm64.DEBOOTSTRAP_TIMEOUT_S + COMMAND_TIMEOUT_S * 4)
def test_the_wheel_installs_and_runs_on_arm64_debian_bookworm(dist: Dist) -> None:
    if (why := arm64.unavailable()) is not None:
        if os.environ.get(arm64.REQUIRED_ENV) == "1":
            pytest.fail(f"{arm64.REQUIRED_ENV}=1, but {why}")
        pytest.skip(why)
    started = time.monotonic()
    with arm64.root_in_use() as root:
        made = " ".join((root / arm64.READY).read_text().split())
        REPORT.append(f"arm64: root ready in {time.monotonic() - started:.0f} s ({made})")
        for old in (root / "opt/edge-vlm", root / "tmp/dist"):
            shutil.rmtree(old, ignore_errors=True)  # a fresh venv every run; pip's cache in the root is kept
        (root / "tmp/dist").mkdir()
        shutil.copy(dist.wheel, root / "tmp/dist")

        def run(command: str) -> subprocess.CompletedProcess[str]:
            return arm64.run(root, f"cd /tmp/dist && {command}", timeout=COMMAND_TIMEOUT_S)

        install = readme_install_lines()
        assert f"./{dist.wheel.name}[rknn]" in install[1]  # the README names the wheel this checkout builds
        for command in install:
            began = time.monotonic()
            done = run(command)
            assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
            REPORT.append(f"arm64: README's {command}: {time.monotonic() - began:.1f} s")
        assert run("uname -m").stdout == "aarch64\n"
        # the rknn extra resolved to the pinned release, and it imports (its NPU calls need the board)
        check = run("/opt/edge-vlm/bin/python -c 'from edge_vlm.doctor.backend import check_rknnlite as c; "
                    "r = c(); print(r.status, r.finding)'")
        assert check.stdout == f"PASS rknnlite imports (rknn-toolkit-lite2 {RKNN_LITE_RELEASE})\n", check.stderr
        exercise(run, "/opt/edge-vlm/bin", f"./{dist.wheel.name}", "arm64 bookworm (qemu)")
    REPORT.append(f"arm64: whole test {time.monotonic() - started:.0f} s")
