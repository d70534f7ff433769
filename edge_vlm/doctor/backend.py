"""Checks of the configured vlm backend: the RKLLM runtime, the model files, the libraries, imgenc.

What is checked, and why, comes from Rockchip's published sources (models/README.md sums them up):
the RKLLM runtime identified by its git blob id (the official ``librkllmrt.so`` of each rknn-llm
release), ``/usr/lib/librknnrt.so`` for RKNNLite (rknn_lite.py loads it from there), imgenc's usage
error, exit status 255 (the multimodal demo's imgenc source), and libomp (rknn-llm's README).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from edge_vlm.config.files import file_problem, not_there
from edge_vlm.config.vlm import ImgencEncoderConfig, RkllmConfig, RknnEncoderConfig, VlmBackendConfig
from edge_vlm.doctor.board import check_cpus, check_memory
from edge_vlm.doctor.check import Check, FindLibrary, on_board, size_text
from edge_vlm.inference.llm.runtime import RELEASES, SUPPORTED, git_blob_id
from edge_vlm.inference.vision.rknn import RKNN_LITE_INSTALL, RKNN_LITE_PYTHONS, RKNN_LITE_RELEASE

IMGENC_USAGE_STATUS = 255  # `imgenc` without arguments: usage on stderr, return -1 (its main())
IMGENC_WAIT_S = 5.0
SMALLEST_MODEL_BYTES = 50 * 1024 * 1024  # the smallest published .rknn / .rkllm is about 219 MB (models/README.md)
RUNTIME_FIX = ("install librkllmrt.so 1.2.1-1.2.3 or 1.3.0 (rknn-llm rkllm-runtime/Linux/librkllm_api/aarch64/) "
               "with a .rkllm converted for that version")


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
    with path.open("rb") as model:
        start = model.read(256).lstrip()
    if start[:1] == b"<":
        return Check(name, "FAIL", f"{shown}: {size_text(size)} that start like a web page (HTML), not a model: the "
                     "download saved a login or error page under this name",
                     "download it again (models/README.md)"), size
    if size < SMALLEST_MODEL_BYTES:
        return Check(name, "WARN", f"{shown}: only {size_text(size)}, less than any published model file (the "
                     "smallest, Qwen3.5-0.8B's encoder, is 219 MB): a cut-off download?",
                     "compare its size with the publisher's (models/README.md) and download it again"), size
    return Check(name, "PASS", f"{shown}: {size_text(size)}"), size


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


def check_rknnlite(python: tuple[int, int] = (sys.version_info.major, sys.version_info.minor),
                   installed: Callable[[str], str] = importlib.metadata.version) -> Check:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its `import pkg_resources` warns with recent setuptools
            importlib.import_module("rknnlite.api")
    except (ImportError, OSError) as exc:
        if not RKNN_LITE_PYTHONS[0] <= python <= RKNN_LITE_PYTHONS[1]:
            return Check("rknnlite", "FAIL", f"rknnlite cannot be imported, and this is Python {python[0]}."
                         f"{python[1]}: {RKNN_LITE_INSTALL}", "make edge_vlm's venv with Python 3.10-3.12, or use "
                         "backend.encoder.type imgenc, which needs no Python package")
        return Check("rknnlite", "FAIL", f"rknnlite cannot be imported: {exc}", RKNN_LITE_INSTALL)
    try:
        version = installed("rknn-toolkit-lite2")
    except importlib.metadata.PackageNotFoundError:
        version = "of an unknown release"
    if version != RKNN_LITE_RELEASE:
        return Check("rknnlite", "WARN", f"rknn-toolkit-lite2 {version} is installed; edge_vlm is written and "
                     f"tested for {RKNN_LITE_RELEASE}", f"pip install 'rknn-toolkit-lite2=={RKNN_LITE_RELEASE}'")
    return Check("rknnlite", "PASS", f"rknnlite imports (rknn-toolkit-lite2 {version})")


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
                 find_library: FindLibrary, *, clips: int = 0) -> list[Check]:
    """``clips``: the most the cameras' clip buffers hold (bytes), in memory beside the models."""
    llm, encoder = backend.llm, backend.encoder
    files = [check_file("encoder.model", encoder.model, root), check_file("llm.model", llm.model, root)]
    checks = [check_runtime(llm, root), *(check for check, _ in files)]
    if soc is None:
        return [*checks, Check("board checks", "SKIP", "memory, CPUs, libraries and imgenc: not a Rockchip board")]
    sizes = [size for _, size in files if size is not None]
    checks.append(check_memory(root, sum(sizes), clips) if len(sizes) == len(files)
                  else Check("memory", "SKIP", "a model file is missing"))
    checks += [check_cpus(llm, soc, affinity), check_libomp(on_board(root, llm.library).parent, find_library)]
    if isinstance(encoder, RknnEncoderConfig):
        checks += [check_librknnrt(root), check_rknnlite()]
    elif isinstance(encoder, ImgencEncoderConfig):
        checks.append(check_imgenc(encoder.executable, root))
    return checks
