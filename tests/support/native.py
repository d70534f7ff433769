"""Build the fake ``librkllmrt.so`` (tests/native/fake_rkllmrt.c) with the system C compiler.

The library implements the C ABI of Rockchip's RKLLM runtime 1.2.1-1.2.3 (``abi="1.2"``) or 1.3.0
(``abi="1.3"``) so a ctypes binding can be tested on a machine without an NPU; see
tests/native/README.md for its behaviour (model-file keys, prompt directives, JSON call log).

Another test module builds it once per session like this (until a shared fixture exists)::

    @pytest.fixture(scope="session")
    def fake_rkllmrt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        out = tmp_path_factory.mktemp("rkllmrt")
        return {abi: build_fake_rkllmrt(abi, out) for abi in ABIS}

and points the binding at ``fake_rkllmrt["1.3"]`` with a model file from :func:`write_model_file`.
Set the environment variable :data:`LOG_ENV` to a file path to get one JSON object per call.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "native" / "fake_rkllmrt.c"
ABIS = ("1.2", "1.3")
LOG_ENV = "EDGE_VLM_FAKE_RKLLM_LOG"
_ABI_MACRO = {"1.2": "12", "1.3": "13"}


def build_fake_rkllmrt(abi: str, out_dir: Path) -> Path:
    """Compile the fake runtime for ``abi`` ("1.2" or "1.3") into ``out_dir/librkllmrt-<abi>.so``.

    Uses ``$CC`` (may hold a command with options) or ``cc``. Raises RuntimeError with the compiler's
    output when the build fails. The library is written under a temporary name and renamed, so
    concurrent builds into one directory never expose a half-written file.
    """
    if abi not in _ABI_MACRO:
        raise ValueError(f"abi must be one of {ABIS}, not {abi!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"librkllmrt-{abi}.so"
    partial = out_dir / f".librkllmrt-{abi}.{os.getpid()}.so"
    compiler = shlex.split(os.environ.get("CC") or "cc")
    command = [
        *compiler, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
        f"-DRKLLM_ABI={_ABI_MACRO[abi]}", "-o", str(partial), str(SOURCE), "-lpthread",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"cannot run the C compiler {shlex.join(command)}: {exc}") from exc
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"building the fake librkllmrt ({abi}) failed with exit code {done.returncode}:\n"
            f"$ {shlex.join(command)}\n{done.stdout}{done.stderr}"
        )
    partial.replace(target)
    return target


def write_model_file(path: Path, *, embed_dim: int = 1536, image_tokens: int = 196, **keys: int) -> Path:
    """Write a fake-runtime "model file" (``key=value`` lines); further keys: npu_cores,
    token_delay_ms, max_context_limit. Defaults are Qwen2-VL-2B's 1536 x 196."""
    lines = [f"embed_dim={embed_dim}", f"image_tokens={image_tokens}", *(f"{k}={v}" for k, v in keys.items())]
    path.write_text("# edge_vlm fake .rkllm\n" + "\n".join(lines) + "\n")
    return path
