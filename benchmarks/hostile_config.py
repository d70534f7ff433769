"""How long `edge-vlm check` takes on files made to take a YAML reader down.

Each file of tests/test_hostile_config.py (billion laughs, a recursive alias, 200,000 ``[``, ...),
a file with a 100 MB string, and for scale the example configuration: `edge-vlm check -c FILE` as
a subprocess, its wall time (the median of RUNS). Python's start and imports are in every figure:
the example file's row is that floor. (Not its peak RSS: a child's ru_maxrss starts from this
process's, which it was forked from.)

Run: .venv/bin/python -m benchmarks.hostile_config [RUNS]   (default 3)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import count_argument
from tests.test_hostile_config import HOSTILE, write_hundred_megabytes

EXAMPLE = Path(__file__).parent.parent / "config" / "edge_vlm.example.yaml"


def check_once(path: Path) -> tuple[float, int]:
    """Wall seconds and exit status of one `edge-vlm check`."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edge_vlm", "check", "-c", str(path)], capture_output=True,
                          check=False)
    return time.perf_counter() - started, done.returncode


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="edge_vlm-hostile-") as directory:
        files = {"the example configuration": EXAMPLE}
        for name, (text, _) in HOSTILE.items():
            files[name] = Path(directory) / f"{len(files)}.yaml"
            files[name].write_text(text)
        files["a 100 MB string"] = Path(directory) / "big.yaml"
        write_hundred_megabytes(files["a 100 MB string"])
        print(f"| file | size | `check` time (median of {runs}) | exit |")
        print("|---|---:|---:|---:|")
        for name, path in files.items():
            results = [check_once(path) for _ in range(runs)]
            seconds = statistics.median(r[0] for r in results)
            size = path.stat().st_size
            shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
            print(f"| {name} | {shown} | {seconds:.2f} s | {results[0][1]} |")


if __name__ == "__main__":
    main(count_argument(__doc__, 3))
