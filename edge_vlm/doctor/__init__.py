"""``edge-vlm doctor``: is this board ready for the NPU backend? One line per check.

What is checked, and why, comes from Rockchip's published sources (airockchip/rknn-llm releases
1.2.1-1.3.0 and rknn-toolkit2 2.3.2; models/README.md sums them up): RKNPU driver 0.9.8 or later
(rknn-llm's README), the RKLLM runtime identified by its git blob id (the official
``librkllmrt.so`` of each release), ``/usr/lib/librknnrt.so`` for RKNNLite (rknn_lite.py loads it
from there), enabled CPUs at least the NPU cores (rknn-llm#271), imgenc's usage error, exit status
255 (the multimodal demo's imgenc source), and libomp (rknn-llm's README).
Every board file is read under ``root``, so tests can build a fake board in a directory. The checks
of the board are in ``doctor.board``, those of a configured vlm backend in ``doctor.backend``; here
they are run in order and printed.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from edge_vlm.config import load_config, preflight
from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import ConfigError
from edge_vlm.doctor.backend import model_checks
from edge_vlm.doctor.board import check_board, check_driver, read_soc
from edge_vlm.doctor.check import Check, FindLibrary

__all__ = ["ROOT", "Check", "doctor", "load_backend", "print_checks", "run_checks"]

ROOT = Path("/")


def load_backend(config_path: Path | None, root: Path = ROOT) -> tuple[list[Check], VlmBackendConfig | None, int]:
    """The configuration's checks, its NPU backend (None: none to check) and the most its cameras'
    clip buffers hold (bytes)."""
    if config_path is None:
        return [Check("models", "SKIP", "no configuration given: edge-vlm doctor -c FILE also checks the "
                      "runtime, the model files, memory and CPUs")], None, 0
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        return [Check("config", "FAIL", f"{config_path}: {len(exc.problems)} problem(s), the first: "
                      f"{exc.problems[0]}", f"edge-vlm check -c {config_path} lists them all"),
                Check("models", "SKIP", "the configuration is not valid")], None, 0
    backend = loaded.config.backend
    clips = sum(camera.clip.most_bytes for camera in loaded.config.cameras if camera.clip is not None)
    # What `edge-vlm check` (and the daemon's start) also says of this machine: files, secrets.
    problems = preflight(loaded, os.environ, root)
    stopping = Check("config", "FAIL", f"{config_path}: valid, but {len(problems)} problem(s) stop the daemon "
                     f"here, the first: {problems[0]}", f"edge-vlm check -c {config_path} lists them all") \
        if problems else None
    if isinstance(backend, OpencvBackendConfig):
        return [stopping or Check("config", "PASS", f"{config_path}: valid, backend opencv"),
                Check("models", "SKIP", "the opencv backend uses no model files")], None, clips
    return [stopping or Check("config", "PASS", f"{config_path}: valid, backend vlm, family {backend.family}, "
                              f"encoder {backend.encoder.type}")], backend, clips


def run_checks(config_path: Path | None, *, root: Path = ROOT, machine: str | None = None,
               affinity: Iterable[int] | None = None,
               find_library: FindLibrary = ctypes.util.find_library) -> list[Check]:
    soc = read_soc(root)
    board = check_board(machine or platform.machine(), soc)
    on_npu = board.status != "FAIL"
    checks = [board, check_driver(root) if on_npu else Check("npu driver", "SKIP", "not a Rockchip board")]
    config_checks, backend, clips = load_backend(config_path, root)
    checks += config_checks
    if backend is not None:
        cpus = frozenset(os.sched_getaffinity(0) if affinity is None else affinity)
        checks += model_checks(backend, soc if on_npu else None, root, cpus, find_library, clips=clips)
    return checks


def print_checks(checks: list[Check], out: TextIO) -> None:
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{check.status}  {check.name:<{width}}  {check.finding}", file=out)
        if check.fix and check.status in ("FAIL", "WARN"):
            print(f"{'':4}  {'':<{width}}  fix: {check.fix}", file=out)
    counts = {status: sum(c.status == status for c in checks) for status in ("PASS", "FAIL", "WARN", "SKIP")}
    print(", ".join(f"{n} {status}" for status, n in counts.items()), file=out)


def doctor(config_path: Path | None, *, root: Path = ROOT, machine: str | None = None,
           affinity: Iterable[int] | None = None, find_library: FindLibrary = ctypes.util.find_library,
           out: TextIO | None = None) -> int:
    """Print every check; exit status 1 if any failed."""
    checks = run_checks(config_path, root=root, machine=machine, affinity=affinity, find_library=find_library)
    print_checks(checks, out or sys.stdout)
    return 1 if any(check.status == "FAIL" for check in checks) else 0
