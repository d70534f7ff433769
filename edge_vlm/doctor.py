"""``edge-vlm doctor``: is this board ready for the NPU backend? One line per check.

What is checked, and why, comes from Rockchip's published facts (rockchip.md): RKNPU driver 0.9.8
or later (§0, pitfall #1), the RKLLM runtime identified by its git blob id (§1.6),
``/usr/lib/librknnrt.so`` for RKNNLite (§5), enabled CPUs at least the NPU cores (§4.4,
rknn-llm#271), imgenc's usage error, exit status 255 (§3), and libomp (§3, pitfall #16).
Every board file is read under ``root``, so tests can build a fake board in a directory.
"""

from __future__ import annotations

import ctypes.util
import importlib
import os
import platform
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from edge_vlm.config import load_config
from edge_vlm.config.files import file_problem, not_there
from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import ImgencEncoderConfig, RkllmConfig, RknnEncoderConfig, VlmBackendConfig
from edge_vlm.errors import ConfigError
from edge_vlm.inference.llm.runtime import RELEASES, SUPPORTED, git_blob_id

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]
FindLibrary = Callable[[str], str | None]

ROOT = Path("/")
MIN_DRIVER = (0, 9, 8)
NPU_CORES = {"rk3588": 3, "rk3576": 2, "rk3562": 1}  # rockchip.md §4.4
IMGENC_USAGE_STATUS = 255  # `imgenc` without arguments: usage on stderr, return -1 (§3)
IMGENC_WAIT_S = 5.0
MEMORY_MARGIN = 1.5
NO_NPU = "edge-vlm doctor checks a board; the daemon can still run here with the opencv backend"
ON_BOARD = "run edge-vlm doctor on the RK3588 or RK3576 board"
DRIVER_FIX = ("use a board kernel with RKNPU driver 0.9.8 (rknpu_driver_0.9.8_20241009 from rknn-llm; "
              "kernel 5.10.209 or 6.1.84 recommended)")
RUNTIME_FIX = ("install librkllmrt.so 1.2.1-1.2.3 or 1.3.0 (rknn-llm rkllm-runtime/Linux/librkllm_api/aarch64/) "
               "with a .rkllm converted for that version")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    finding: str
    fix: str = ""


def on_board(root: Path, path: Path) -> Path:
    """``path`` as seen under ``root`` (the board's / unless a test builds one)."""
    return root / path.relative_to("/") if path.is_absolute() else path


def size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


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


def check_runtime(llm: RkllmConfig, root: Path) -> Check:
    shown = f"backend.llm.library {llm.library}"
    try:
        blob = git_blob_id(on_board(root, llm.library))
    except OSError as exc:
        if (problem := not_there(exc)) is not None:
            return Check("rkllm runtime", "FAIL", f"{shown}: {problem}", f"{RUNTIME_FIX}, at {llm.library}")
        return Check("rkllm runtime", "FAIL", f"{shown}: cannot read it: {exc.strerror}",
                     f"chmod a+r {llm.library}")
    return identify_runtime(shown, blob, llm.runtime_version)


def identify_runtime(shown: str, blob: str, configured: str) -> Check:
    name, release = "rkllm runtime", RELEASES.get(blob)
    if release is None and configured == "auto":
        return Check(name, "FAIL", f"{shown}: unknown build (git blob {blob}): set runtime_version",
                     'set backend.llm.runtime_version to "1.2" (runtime 1.2.1-1.2.3) or "1.3" (1.3.x) to match it')
    if release is None:
        return Check(name, "WARN", f"{shown}: unknown build (git blob {blob}), bound as ABI {configured} "
                     "because backend.llm.runtime_version says so",
                     f"make sure it is a {configured}.x runtime: another ABI crashes in rkllm_run")
    abi = SUPPORTED.get(release)
    if abi is None:
        return Check(name, "FAIL", f"{shown}: RKLLM runtime {release}, which edge_vlm does not support", RUNTIME_FIX)
    if configured not in ("auto", abi):
        return Check(name, "FAIL", f"{shown}: RKLLM runtime {release} (ABI {abi}), but "
                     f"backend.llm.runtime_version is {configured}",
                     f'set backend.llm.runtime_version to "{abi}" or "auto"')
    return Check(name, "PASS", f"{shown}: RKLLM runtime {release} (ABI {abi})")


def check_file(key: str, configured: Path, root: Path) -> tuple[Check, int | None]:
    """A model file's check, and its size when it is there."""
    path, name, shown = on_board(root, configured), key.replace(".", " "), f"backend.{key} {configured}"
    problem = file_problem(path)
    if problem == "not readable by this user":
        return Check(name, "FAIL", f"{shown}: {problem}", f"chmod a+r {configured}"), None
    if problem is not None:
        return Check(name, "FAIL", f"{shown}: {problem}",
                     f"download it (see models/README.md) to {configured}, or point backend.{key} at it"), None
    size = path.stat().st_size
    return Check(name, "PASS", f"{shown}: {size_text(size)}"), size


def read_available(root: Path) -> int | None:
    """MemAvailable from /proc/meminfo, bytes."""
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def check_memory(root: Path, needed: int) -> Check:
    available = read_available(root)
    if available is None:
        return Check("memory", "WARN", "no MemAvailable in /proc/meminfo")
    found = f"{size_text(available)} available for {size_text(needed)} of model files"
    fix = "stop other programs, choose a smaller model family, or use a board with more RAM"
    if available < needed:
        return Check("memory", "FAIL", f"{found}: the models do not fit", fix)
    if available < MEMORY_MARGIN * needed:
        return Check("memory", "WARN", f"{found}: less than {MEMORY_MARGIN}x, and the runtime needs more than "
                     "the files (context, buffers)", fix)
    return Check("memory", "PASS", found)


def check_cpus(llm: RkllmConfig, soc: str, affinity: frozenset[int]) -> Check:
    npu = NPU_CORES[soc]
    # The runtime's default when llm.cpus is unset (edge_vlm.inference.llm.rkllm.default_cpus).
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


def check_libomp(library_dir: Path, find_library: FindLibrary) -> Check:
    found = find_library("omp") or next((str(p) for p in sorted(library_dir.glob("libomp.so*"))), None)
    if found is None:
        return Check("libomp", "WARN", "libomp.so not found: loading librkllmrt.so may fail where it is missing",
                     "copy libomp.so from the aarch64 toolchain next to librkllmrt.so (Rockchip's README)")
    return Check("libomp", "PASS", f"libomp: {found}")


def check_librknnrt(root: Path) -> Check:
    if (root / "usr/lib/librknnrt.so").is_file():
        return Check("librknnrt", "PASS", "/usr/lib/librknnrt.so is there (RKNNLite loads it from there)")
    return Check("librknnrt", "FAIL", "/usr/lib/librknnrt.so not found: RKNNLite loads the RKNN runtime from there",
                 "copy librknnrt.so from rknn-toolkit2's rknpu2/runtime/Linux/librknn_api/aarch64/ to /usr/lib/")


def check_rknnlite() -> Check:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its `import pkg_resources` warns with recent setuptools
            importlib.import_module("rknnlite.api")
    except (ImportError, OSError) as exc:
        return Check("rknnlite", "FAIL", f"rknnlite cannot be imported: {exc}",
                     "pip install 'edge-vlm[rknn]' (rknn-toolkit-lite2: aarch64 Linux, Python 3.7-3.12)")
    return Check("rknnlite", "PASS", "rknnlite imports")


def check_imgenc(configured: Path, root: Path) -> Check:
    path, shown = on_board(root, configured), f"backend.encoder.executable {configured}"
    if (problem := file_problem(path)) not in (None, "not readable by this user"):
        return Check("imgenc", "FAIL", f"{shown}: {problem}", "build imgenc with build-linux.sh in rknn-llm's "
                     "examples/multimodal_model_demo/deploy and point backend.encoder.executable at it")
    if not os.access(path, os.X_OK):
        return Check("imgenc", "FAIL", f"{shown}: not executable", f"chmod +x {configured}")
    try:
        done = subprocess.run([str(path)], capture_output=True, text=True, errors="replace",  # noqa: S603
                              timeout=IMGENC_WAIT_S, check=False)
    except subprocess.TimeoutExpired:
        return Check("imgenc", "FAIL", f"{shown}: still running {IMGENC_WAIT_S:.0f} s after a start without "
                     "arguments, where imgenc prints its usage", "point backend.encoder.executable at imgenc")
    except OSError as exc:
        return Check("imgenc", "FAIL", f"{shown}: cannot run it: {exc.strerror}", "use an aarch64 build of imgenc")
    if done.returncode != IMGENC_USAGE_STATUS:
        said = (done.stderr + done.stdout).strip().splitlines()
        return Check("imgenc", "FAIL", f"{shown}: exit status {done.returncode} without arguments, expected 255 "
                     f"(its usage): {said[-1] if said else '(no output)'}", f"run {configured} by hand; a missing "
                     "librknnrt.so or OpenCV library needs LD_LIBRARY_PATH or /usr/lib")
    return Check("imgenc", "PASS", f"{shown}: runs (usage error, exit status 255)")


def model_checks(backend: VlmBackendConfig, soc: str | None, root: Path, affinity: frozenset[int],
                 find_library: FindLibrary) -> list[Check]:
    llm, encoder = backend.llm, backend.encoder
    files = [check_file("encoder.model", encoder.model, root), check_file("llm.model", llm.model, root)]
    checks = [check_runtime(llm, root), *(check for check, _ in files)]
    if soc is None:
        return [*checks, Check("board checks", "SKIP", "memory, CPUs, libraries and imgenc: not a Rockchip board")]
    sizes = [size for _, size in files if size is not None]
    checks.append(check_memory(root, sum(sizes)) if len(sizes) == len(files)
                  else Check("memory", "SKIP", "a model file is missing"))
    checks += [check_cpus(llm, soc, affinity), check_libomp(on_board(root, llm.library).parent, find_library)]
    if isinstance(encoder, RknnEncoderConfig):
        checks += [check_librknnrt(root), check_rknnlite()]
    elif isinstance(encoder, ImgencEncoderConfig):
        checks.append(check_imgenc(encoder.executable, root))
    return checks


def load_backend(config_path: Path | None) -> tuple[list[Check], VlmBackendConfig | None]:
    if config_path is None:
        return [Check("models", "SKIP", "no configuration given: edge-vlm doctor -c FILE also checks the "
                      "runtime, the model files, memory and CPUs")], None
    try:
        backend = load_config(config_path).config.backend
    except ConfigError as exc:
        return [Check("config", "FAIL", f"{config_path}: {len(exc.problems)} problem(s), the first: "
                      f"{exc.problems[0]}", f"edge-vlm check -c {config_path} lists them all"),
                Check("models", "SKIP", "the configuration is not valid")], None
    if isinstance(backend, OpencvBackendConfig):
        return [Check("config", "PASS", f"{config_path}: valid, backend opencv"),
                Check("models", "SKIP", "the opencv backend uses no model files")], None
    return [Check("config", "PASS", f"{config_path}: valid, backend vlm, family {backend.family}, "
                  f"encoder {backend.encoder.type}")], backend


def run_checks(config_path: Path | None, *, root: Path = ROOT, machine: str | None = None,
               affinity: Iterable[int] | None = None,
               find_library: FindLibrary = ctypes.util.find_library) -> list[Check]:
    soc = read_soc(root)
    board = check_board(machine or platform.machine(), soc)
    on_npu = board.status != "FAIL"
    checks = [board, check_driver(root) if on_npu else Check("npu driver", "SKIP", "not a Rockchip board")]
    config_checks, backend = load_backend(config_path)
    checks += config_checks
    if backend is not None:
        cpus = frozenset(os.sched_getaffinity(0) if affinity is None else affinity)
        checks += model_checks(backend, soc if on_npu else None, root, cpus, find_library)
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
