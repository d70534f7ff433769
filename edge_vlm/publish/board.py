"""What the board itself says: NPU load, SoC temperature, process memory.

Pure readers of ``/proc`` and ``/sys`` under a ``root`` directory (``/`` on the board; a test
builds a fake tree), and ``BoardMonitor``, which turns them into diagnostics values and says once
in the log why a value cannot be shown.

- NPU load: the RKNPU driver's ``load`` file, ``NPU load:  Core0: 12%, Core1:  0%, Core2:  0%,``
  on a multi-core NPU (RK3588: 3 cores, RK3576: 2), ``NPU load:  12%`` on a single core; the busy
  share of each core over the driver's last sampling interval. It is in debugfs
  (``/sys/kernel/debug/rknpu/load``), which only root can enter unless debugfs is mounted with
  ``mode=0755``; kernels built with ``CONFIG_ROCKCHIP_RKNPU_PROC_FS`` also have
  ``/proc/rknpu/load``, readable by everyone, which is tried first.
- SoC temperature: the thermal zone of type ``soc-thermal`` (RK3588), else the hottest zone.
- Memory: ``VmRSS`` of a process from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

ROOT = Path("/")
NPU_LOAD_FILES = ("proc/rknpu/load", "sys/kernel/debug/rknpu/load")
THERMAL_DIR = "sys/class/thermal"
SOC_ZONE = "soc-thermal"
MAX_NPU_CORES = 8
# Below absolute zero or hotter than any SoC survives: a broken sensor, not a temperature.
PLAUSIBLE_CELSIUS = (-273.0, 200.0)
DEBUGFS_HINT = ("debugfs is readable by root only; to show NPU load, mount it readable: "
                "sudo mount -o remount,mode=0755 /sys/kernel/debug (docs/home-assistant.md: Diagnostics)")

_CORE = re.compile(r"Core(\d+):\s*(\d+)\s*%")
_SINGLE = re.compile(r"^NPU load:\s*(\d+)\s*%\s*$")


class Unreadable(Exception):
    """A board value cannot be read here; the message says why, for a person."""


@dataclass(frozen=True)
class NpuLoad:
    cores: tuple[int, ...]  # percent busy, per core, in core order

    @property
    def mean(self) -> float:
        return sum(self.cores) / len(self.cores)


@dataclass(frozen=True)
class Temperature:
    zone: str  # the thermal zone's type, e.g. soc-thermal
    celsius: float


def parse_npu_load(text: str) -> NpuLoad | None:
    """The RKNPU driver's load line, or None when ``text`` is not one."""
    text = text.strip()
    if not text.startswith("NPU load:"):
        return None
    if single := _SINGLE.match(text):
        cores = [int(single.group(1))]
    else:
        found = [(int(core), int(load)) for core, load in _CORE.findall(text)]
        if not found or [core for core, _ in found] != list(range(len(found))) or len(found) > MAX_NPU_CORES:
            return None
        cores = [load for _, load in found]
    if any(load > 100 for load in cores):
        return None
    return NpuLoad(tuple(cores))


def unreadable_reason(path: str, error: OSError) -> str:
    """Why ``path`` could not be read, and what to do about it."""
    if isinstance(error, PermissionError) and "/sys/kernel/debug/" in path:
        return f"{path}: permission denied: {DEBUGFS_HINT}"
    if isinstance(error, FileNotFoundError):
        return f"{path} does not exist"
    return f"{path}: {error.strerror or type(error).__name__}"


def read_npu_load(root: Path = ROOT) -> NpuLoad:
    """The NPU's load now, from the first of ``NPU_LOAD_FILES`` there is; Unreadable if none."""
    problems = []
    for name in NPU_LOAD_FILES:
        try:
            text = (root / name).read_text(errors="replace")
        except OSError as error:
            problems.append(unreadable_reason(f"/{name}", error))
            continue
        load = parse_npu_load(text)
        if load is None:
            raise Unreadable(f"/{name} says {text.strip()[:80]!r}, which is not the RKNPU driver's load line")
        return load
    if all(problem.endswith("does not exist") for problem in problems):
        raise Unreadable(f"no RKNPU driver load file ({' or '.join('/' + n for n in NPU_LOAD_FILES)}): "
                         "not a Rockchip NPU board, or debugfs is not mounted")
    raise Unreadable("; ".join(p for p in problems if not p.endswith("does not exist")))


def read_soc_temperature(root: Path = ROOT) -> Temperature:
    """The SoC's temperature: the ``soc-thermal`` zone, else the hottest zone; Unreadable if none."""
    zones: list[Temperature] = []
    for zone in sorted((root / THERMAL_DIR).glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text(errors="replace").strip()
            celsius = int((zone / "temp").read_text().strip()) / 1000  # millidegrees
        except (OSError, ValueError):  # a zone whose sensor is off, or says nothing useful
            continue
        if PLAUSIBLE_CELSIUS[0] < celsius < PLAUSIBLE_CELSIUS[1]:
            zones.append(Temperature(kind, celsius))
    if not zones:
        raise Unreadable(f"no readable thermal zone in /{THERMAL_DIR}")
    return next((z for z in zones if z.zone == SOC_ZONE), max(zones, key=lambda z: z.celsius))


def read_rss_bytes(root: Path = ROOT, pid: int | str = "self") -> int:
    """Resident memory of process ``pid`` (VmRSS); Unreadable if it is gone or has none (a zombie)."""
    path = f"proc/{pid}/status"
    try:
        text = (root / path).read_text(errors="replace")
    except OSError as error:
        raise Unreadable(unreadable_reason(f"/{path}", error)) from None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    if match is None:
        raise Unreadable(f"/{path} has no VmRSS line")
    return int(match.group(1)) * 1024


def mib(size: int) -> float:
    return round(size / 2**20, 1)


class BoardMonitor:
    """The board's values for the diagnostics JSON (None when unreadable), each missing one
    explained once in the log."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self._explained: set[str] = set()

    def values(self, worker_pid: int | None = None) -> dict[str, Any]:
        npu = self._read("NPU load", read_npu_load)
        temperature = self._read("SoC temperature", read_soc_temperature)
        memory = self._read("Memory", read_rss_bytes)
        worker = None
        if worker_pid is not None:
            try:
                worker = read_rss_bytes(self.root, worker_pid)
            except Unreadable:  # the worker just exited: the supervisor says so, and restarts it
                worker = None
        return {
            "npu_load": None if npu is None else round(npu.mean, 1),
            "npu_load_cores": None if npu is None else {f"core{i}": load for i, load in enumerate(npu.cores)},
            "soc_temperature_c": None if temperature is None else round(temperature.celsius, 1),
            "soc_thermal_zone": None if temperature is None else temperature.zone,
            "memory_mib": None if memory is None else mib(memory),
            "worker_memory_mib": None if worker is None else mib(worker),
        }

    def _read(self, what: str, reader: Callable[[Path], T]) -> T | None:
        try:
            return reader(self.root)
        except Unreadable as exc:
            if what not in self._explained:
                self._explained.add(what)
                logger.info("%s is not shown in the diagnostics: %s", what, exc)
            return None
