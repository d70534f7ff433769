"""The systemd unit (systemd/edge-vlm.service): what systemd-analyze says of it, its settings against the
daemon's own timings, and the W^X promise (MemoryDenyWriteExecute=) against the real stack.

``systemd-analyze verify`` and ``security --offline=yes`` need no running systemd. MemoryDenyWriteExecute=
cannot be had without systemd, but the kernel's own W^X (``prctl(PR_SET_MDWE)``, Linux 6.3+) refuses the
same mappings; the daemon's code paths are run under it.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from edge_vlm import install
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.service import STOP_GRACE_S
from tests.support.npu import vlm_backend

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "edge-vlm.service"
EXAMPLE = ROOT / "config" / "edge_vlm.example.yaml"
SAMPLE = ROOT / "edge_vlm" / "samples" / "front_door.jpg"
MAX_EXPOSURE = 3.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
# Sets the kernel's W^X on itself, then becomes the command: MDWE is kept across execve and fork.
UNDER_MDWE = (
    "import ctypes, os, sys\n"
    f"if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit('prctl(PR_SET_MDWE) failed: errno %d' % ctypes.get_errno())\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> its values in order (keys such as DeviceAllow= repeat)."""
    settings: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings[f"{section}.{key}"].append(value)
    return settings


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"not a plain time span: {value}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, check=False, timeout=60)


@needs_analyze
def test_the_exposure_score_is_at_most_3() -> None:
    done = analyze("security", "--offline=yes", str(UNIT))

    match = re.search(r"Overall exposure level for edge-vlm\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security --offline=yes systemd/edge-vlm.service: {score}")
    assert score <= MAX_EXPOSURE
    # The protections the unit promises, each one as systemd itself reads it.
    checks = {c["name"]: c["set"] for c in json.loads(analyze("security", "--offline=yes", "--json=short",
                                                              str(UNIT)).stdout)}
    promised = ["NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=", "ProtectKernelTunables=",
                "ProtectKernelModules=", "ProtectKernelLogs=", "ProtectControlGroups=", "ProtectClock=",
                "ProtectHostname=", "RestrictNamespaces=~user", "RestrictRealtime=", "RestrictSUIDSGID=",
                "LockPersonality=", "MemoryDenyWriteExecute=", "SystemCallArchitectures=",
                "SystemCallFilter=~@privileged", "SystemCallFilter=~@debug", "SystemCallFilter=~@mount",
                "RestrictAddressFamilies=~AF_PACKET", "RestrictAddressFamilies=~AF_NETLINK",
                "RestrictAddressFamilies=~…", "CapabilityBoundingSet=~CAP_SYS_ADMIN", "AmbientCapabilities=",
                "UMask=", "ProtectProc=", "NotifyAccess=", "PrivateMounts=", "RemoveIPC=", "User=/DynamicUser="]
    assert {name: checks.get(name) for name in promised} == dict.fromkeys(promised, True)


@needs_analyze
def test_the_installed_unit_verifies_clean(tmp_path: Path) -> None:
    trivial = tmp_path / "trivial.service"
    trivial.write_text("[Service]\nExecStart=/bin/true\n")
    if (done := analyze("verify", "--man=no", str(trivial))).returncode != 0:
        pytest.skip(f"systemd-analyze verify does not work here: {done.stderr.strip()}")
    unit = tmp_path / "edge-vlm.service"
    unit.write_text(install.render_unit(install.service_command()))

    done = analyze("verify", "--man=no", str(unit))

    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # It would have said so: an unknown key, a command that is not there.
    broken = unit.read_text().replace("UMask=0077", "UMask=0077\nProtectEverything=yes")
    broken = broken.replace(f"ExecStart={install.service_command()}", "ExecStart=/nonexistent/edge-vlm")
    unit.write_text(broken)
    done = analyze("verify", "--man=no", str(unit))
    assert "Unknown key 'ProtectEverything'" in done.stderr
    assert "/nonexistent/edge-vlm is not executable" in done.stderr


def test_the_unit_fits_the_daemon() -> None:
    unit = unit_settings(UNIT.read_text())
    service = {key.removeprefix("Service."): values for key, values in unit.items() if key.startswith("Service.")}
    one = {key: values[-1] for key, values in service.items()}
    vlm = VlmBackendConfig.model_fields

    assert (one["Type"], one["NotifyAccess"], one["KillMode"], one["Restart"]) == ("notify", "main", "mixed",
                                                                                   "on-failure")
    assert one["ExecStart"] == f"{install.PACKAGED_EXECUTABLE} run -c /etc/edge-vlm/edge_vlm.yaml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert seconds(one["WatchdogSec"]) == 30
    # Start: the models may take the daemon's whole load timeout.
    assert seconds(one["TimeoutStartSec"]) > vlm["load_timeout_s"].default
    # Stop: the job in flight (STOP_GRACE_S), then its abort and the worker's kill (abort_grace_s), with room.
    worst_stop = 2 * STOP_GRACE_S + vlm["abort_grace_s"].default
    assert worst_stop + 10 <= seconds(one["TimeoutStopSec"]) <= worst_stop + 30
    assert seconds(unit["Unit.StartLimitIntervalSec"][0]) > 0 and int(unit["Unit.StartLimitBurst"][0]) > 1
    # The credentials the installer prepares are the ones the unit loads.
    loaded = {value.split(":", 1)[0]: value.split(":", 1)[1] for value in service["LoadCredential"]}
    assert loaded == {name: f"/etc/edge-vlm/credentials/{name}" for name in install.CREDENTIAL_FILES}
    assert (one["User"], one["Group"], one["SupplementaryGroups"].split()) == ("edge-vlm", "edge-vlm",
                                                                               list(install.DEVICE_GROUPS))
    assert one["DevicePolicy"] == "closed"
    assert service["DeviceAllow"] == ["char-drm rw", "/dev/rknpu rw", "char-*dma_heap rw"]
    assert one["CapabilityBoundingSet"] == one["AmbientCapabilities"] == ""


def test_the_package_ships_the_unit_and_the_example() -> None:
    assert install.packaged(install.UNIT_NAME) == UNIT.read_text()
    assert install.packaged(install.CONFIG_EXAMPLE) == EXAMPLE.read_text()
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["edge_vlm"]
    shipped = {path.name for pattern in globs for path in (ROOT / "edge_vlm").glob(pattern)}
    assert {install.UNIT_NAME, install.CONFIG_EXAMPLE} <= shipped


@pytest.fixture
def mdwe() -> list[str]:
    """The prefix that runs a command under the kernel's W^X; skips where the kernel has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip(f"this kernel has no PR_SET_MDWE (Linux 6.3+): errno {ctypes.get_errno()}")
    return [sys.executable, "-c", UNDER_MDWE]


def describe(prefix: list[str], config: Path | None) -> str:
    command = [*prefix, str(Path(sys.executable).with_name("edge-vlm")), "describe", str(SAMPLE)]
    done = subprocess.run([*command, *(["-c", str(config)] if config else [])], capture_output=True, text=True,
                          check=False, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_stack_runs_with_no_writable_executable_memory(mdwe: list[str], fake_rkllmrt: dict[str, Path],
                                                           tmp_path: Path) -> None:
    # The prefix works: a W+X mapping is refused under it, allowed without.
    probe = ["-c", "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"]
    refused = subprocess.run([*mdwe, sys.executable, *probe], capture_output=True, text=True, check=False,
                             timeout=60)
    assert refused.returncode == 1 and "PermissionError" in refused.stderr
    assert subprocess.run([sys.executable, *probe], check=False, timeout=60).returncode == 0
    # The opencv backend (numpy, OpenCV), and the vlm backend: the worker process, onnxruntime, and the
    # RKLLM binding's ctypes callbacks (libffi closures) into the test runtime.
    config = tmp_path / "vlm.yaml"
    backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx")
    config.write_text(yaml.safe_dump({"backend": backend, "cameras": [{"id": "cli"}]}))

    for chosen in (None, config):
        described = describe(mdwe, chosen)
        assert described.strip()
        assert described == describe([], chosen)
