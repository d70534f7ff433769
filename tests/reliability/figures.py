"""The figures the reliability tests measure: printed (``pytest -s`` shows them) and, when
``EDGE_VLM_FIGURES_DIR`` is set, written there as ``<name>.json`` for docs/behaviour-and-performance.md."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

FIGURES_DIR_ENV = "EDGE_VLM_FIGURES_DIR"


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"RELIABILITY {name}: " + ", ".join(f"{key}={value}" for key, value in figures.items()))
    directory = os.environ.get(FIGURES_DIR_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    """median and max of ``values``, rounded."""
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits)}


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    if len(samples) < 2 or max(xs) == min(xs):
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return covariance / sum((x - mean_x) ** 2 for x in xs) * 60


def process_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of a process, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values
