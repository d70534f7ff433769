"""Checks of the board itself: the SoC, the RKNPU driver, memory for the models, CPUs for the NPU cores.

What is checked, and why, comes from Rockchip's published sources (models/README.md, Pitfalls):
RKNPU driver 0.9.8 or later (rknn-llm's README), enabled CPUs at least the NPU cores (rknn-llm#271).
"""

from __future__ import annotations

import re
from pathlib import Path

from edge_vlm.config.vlm import RkllmConfig
from edge_vlm.doctor.check import Check, size_text

MIN_DRIVER = (0, 9, 8)
NPU_CORES = {"rk3588": 3, "rk3576": 2, "rk3562": 1}  # NPU cores per SoC (rknn-llm's README)
MEMORY_MARGIN = 1.5
NO_NPU = "edge-vlm doctor checks a board; the daemon can still run here with the opencv backend"
ON_BOARD = "run edge-vlm doctor on the RK3588 or RK3576 board"
DRIVER_FIX = ("use a board kernel with RKNPU driver 0.9.8 (rknpu_driver_0.9.8_20241009 from rknn-llm; "
              "kernel 5.10.209 or 6.1.84 recommended)")


def read_soc(root: Path) -> str | None:
    """rk3588, rk3576, rk3562, the name of another Rockchip SoC, or None."""
    try:
        text = (root / "proc/device-tree/compatible").read_bytes().decode(errors="replace")
    except OSError:
        return None
    known = next((soc for soc in NPU_CORES if soc in text), None)
    others = [e.removeprefix("rockchip,") for e in text.split("\0") if e.startswith("rockchip,")]
    return known or (others[-1] if others else None)  # the SoC is the last, most general entry


def check_board(machine: str, soc: str | None) -> Check:
    if machine != "aarch64":
        return Check("board", "FAIL", f"this machine has no Rockchip NPU ({machine}): {NO_NPU}", ON_BOARD)
    if soc is None:
        return Check("board", "FAIL", "this machine has no Rockchip NPU (aarch64, no Rockchip SoC in "
                     f"/proc/device-tree/compatible): {NO_NPU}", ON_BOARD)
    if soc not in NPU_CORES:
        return Check("board", "FAIL", f"Rockchip {soc}: the NPU backend knows RK3588, RK3576 and RK3562 only",
                     "use the opencv backend on this board")
    found = f"aarch64, {soc.upper()} ({NPU_CORES[soc]} NPU core{'s' * (NPU_CORES[soc] > 1)})"
    if soc == "rk3562":
        return Check("board", "WARN", f"{found}: Rockchip publishes multimodal timings for RK3588 and RK3576 only")
    return Check("board", "PASS", found)


def _debugfs_mounted(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except PermissionError:
        return True
    except OSError:
        return False


def check_driver(root: Path) -> Check:
    name, where = "npu driver", "/sys/kernel/debug/rknpu/version"
    try:
        text = (root / where.lstrip("/")).read_text(errors="replace").strip()
    except PermissionError:
        return Check(name, "WARN", f"cannot read {where}: debugfs is readable by root only",
                     "run it as root: sudo edge-vlm doctor")
    except OSError:
        if not _debugfs_mounted(root / "sys/kernel/debug"):
            return Check(name, "WARN", f"cannot read {where}: debugfs is not mounted",
                         "sudo mount -t debugfs debugfs /sys/kernel/debug")
        return Check(name, "FAIL", f"no RKNPU driver: {where} does not exist", DRIVER_FIX)
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return Check(name, "WARN", f"{where} says {text!r}: no version number in it")
    version = tuple(int(part) for part in match.groups())
    shown = ".".join(match.groups())
    if version < MIN_DRIVER:
        return Check(name, "FAIL", f"RKNPU driver {shown}: RKLLM needs 0.9.8 or later (older drivers fail with "
                     "'failed to malloc npu memory')", DRIVER_FIX)
    return Check(name, "PASS", f"RKNPU driver {shown}")


def read_available(root: Path) -> int | None:
    """MemAvailable from /proc/meminfo, bytes."""
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def check_memory(root: Path, models: int, clips: int = 0) -> Check:
    """Whether the model files (``models`` bytes) and the cameras' clip buffers (``clips``, at
    their most) fit in the memory available."""
    available = read_available(root)
    if available is None:
        return Check("memory", "WARN", "no MemAvailable in /proc/meminfo")
    needed = models + clips
    found = f"{size_text(available)} available for {size_text(models)} of model files"
    if clips:
        found += f" and {size_text(clips)} of clip buffers at most"
    fix = "stop other programs, choose a smaller model family, or use a board with more RAM"
    if clips:
        fix += "; shorter clips (cameras[].clip: seconds, fps, long_side)"
    if available < needed:
        return Check("memory", "FAIL", f"{found}: {'they' if clips else 'the models'} do not fit", fix)
    if available < MEMORY_MARGIN * needed:
        return Check("memory", "WARN", f"{found}: less than {MEMORY_MARGIN}x, and the runtime needs more than "
                     "the files (context, buffers)", fix)
    return Check("memory", "PASS", found)


def check_cpus(llm: RkllmConfig, soc: str, affinity: frozenset[int]) -> Check:
    npu = NPU_CORES[soc]
    # The runtime's default when llm.cpus is unset (edge_vlm.inference.llm.params.default_cpus).
    cpus = llm.cpus or ([4, 5, 6, 7] if soc in ("rk3588", "rk3576") else [0, 1, 2, 3])
    found = f"{'backend.llm.cpus' if llm.cpus else 'default CPUs'} {cpus}: {len(cpus)} for {npu} NPU cores"
    if len(cpus) < npu:
        return Check("cpus", "FAIL", f"{found}: rkllm_init refuses fewer enabled CPUs than NPU cores "
                     "(rknn-llm#271)", f"list at least {npu} CPUs in backend.llm.cpus, e.g. [4, 5, 6, 7]")
    if missing := sorted(set(cpus) - affinity):
        return Check("cpus", "WARN", f"{found}; CPU(s) {missing} are not available to this process "
                     f"(affinity {sorted(affinity)})", "allow them (systemd CPUAffinity=, taskset) or leave "
                     "them out of backend.llm.cpus")
    return Check("cpus", "PASS", found)
