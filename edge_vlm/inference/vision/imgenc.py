"""The ``imgenc`` encoder: Rockchip's demo binary, run once per frame, as the multimodal demo ships it.

``imgenc <model> <image> <core_num>`` writes ``img_vec.bin`` (raw float32, [token][output][dim])
into its working directory, and exits 0 even when encoding failed (the multimodal demo's imgenc source). So each run
gets a private temporary directory (mode 0700, removed afterwards whatever happens), a timeout,
and its output file is checked for exactly the size the tensor shapes it printed call for.
The frame is handed over already padded and resized, so imgenc's own preprocessing is a no-op.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_vlm.config.vlm import ImgencEncoderConfig, ModelSpec
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.inference.vision.shapes import check_against_preset

OUTPUT_FILE = "img_vec.bin"
_COUNTS = re.compile(r"model input num: (\d+), output num: (\d+)")
_TENSOR = re.compile(r"index=\d+, name=[^,]*, n_dims=(\d+), dims=\[([\d, ]*)\]")
_TAIL_LINES = 6


@dataclass(frozen=True)
class OutputShape:
    tokens: int
    floats_per_token: int


def output_shape(printed: str) -> OutputShape | None:
    """Tokens and floats per token from imgenc's printout of its tensors, if it printed them.

    Inputs are listed first, then outputs; an output's tokens are its first dimension above 1 and
    its width the next one (the rule of rknn-llm PR #391); outputs are concatenated per token.
    """
    counts = _COUNTS.search(printed)
    if counts is None:
        return None
    inputs, outputs = int(counts.group(1)), int(counts.group(2))
    # dump_tensor_attr prints 4 dims whatever n_dims is ("n_dims=2, dims=[196, 2048, 0, 0]").
    tensors = [[int(d) for d in m.group(2).split(",") if d.strip()][: int(m.group(1))]
               for m in _TENSOR.finditer(printed)]
    if outputs < 1 or len(tensors) < inputs + outputs:
        return None
    tokens, width = set(), 0
    for dims in tensors[inputs : inputs + outputs]:
        big = [i for i, d in enumerate(dims) if d > 1]
        if len(big) < 2:
            return None
        tokens.add(dims[big[0]])
        width += dims[big[0] + 1]
    return OutputShape(tokens.pop(), width) if len(tokens) == 1 else None


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:]) or "(no output)"


class ImgencEncoder:
    def __init__(self, config: ImgencEncoderConfig, spec: ModelSpec) -> None:
        self.config = config
        self.spec = spec
        self.input_size = spec.input_size
        # Absolute: imgenc runs in a temporary directory.
        self.executable = config.executable.resolve()
        self.model = config.model.resolve()
        self.shape: OutputShape | None = None  # known after the first run

    def load(self) -> None:
        """Check the files, then encode a grey frame once: a model that cannot work fails here, at start."""
        for path in (self.executable, self.model):
            if not path.is_file():
                raise BackendError(f"{path}: file not found")
        self.encode(np.full((self.input_size, self.input_size, 3), 128, dtype=np.uint8))

    def close(self) -> None:
        pass

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        workdir = Path(tempfile.mkdtemp(prefix="edge_vlm-imgenc-"))
        try:
            image = workdir / "frame.bmp"  # in a 0700 directory, and 0600 itself: camera images are private
            if not cv2.imwrite(str(image), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
                raise BackendError(f"could not write the frame for imgenc into {workdir}")
            image.chmod(0o600)
            printed = self._run(workdir, image)
            return self._read(workdir / OUTPUT_FILE, printed)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, workdir: Path, image: Path) -> str:
        command = [str(self.executable), str(self.model), str(image), str(self.config.npu_cores)]
        try:
            done = subprocess.run(  # noqa: S603 - the configured program, no shell
                command, cwd=workdir, capture_output=True, text=True, errors="replace",
                timeout=self.config.timeout_s, check=False, env=self._environment(),
            )
        except subprocess.TimeoutExpired:
            raise BackendError(f"imgenc did not finish within {self.config.timeout_s:.0f} s and was killed",
                               code=ErrorCode.TIMED_OUT) from None
        except OSError as exc:
            raise BackendError(f"cannot run {self.executable}: {exc.strerror}") from None
        printed = done.stdout + done.stderr
        if done.returncode < 0:
            raise BackendError(f"imgenc was killed by signal {-done.returncode}: {_tail(printed)}")
        if done.returncode != 0:
            raise BackendError(f"imgenc failed with exit status {done.returncode}: {_tail(printed)}")
        if "fail!" in printed:
            raise BackendError(f"imgenc reported a failure: {_tail(printed)}")
        return printed

    def _environment(self) -> dict[str, str]:
        """Rockchip's build puts librknnrt.so in lib/ beside imgenc and runs it with LD_LIBRARY_PATH=./lib;
        we run it from a temporary directory, so point at that lib/ explicitly when it is there."""
        environment = dict(os.environ)
        lib = self.executable.parent / "lib"
        if lib.is_dir():
            environment["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(lib), environment.get("LD_LIBRARY_PATH")) if p)
        return environment

    def _read(self, output: Path, printed: str) -> np.ndarray:
        shape = output_shape(printed) or self.shape or self._preset_shape()
        if self.shape is None:
            check_against_preset(shape.tokens, shape.floats_per_token, self.spec, self.model)
            self.shape = shape
        if not output.is_file():
            # imgenc exits 0 without writing its file when encoding failed.
            raise BackendError(f"imgenc exited 0 but wrote no {OUTPUT_FILE}: {_tail(printed)}")
        expected = shape.tokens * shape.floats_per_token * 4
        size = output.stat().st_size
        if size != expected:
            raise BackendError(
                f"imgenc wrote {size} bytes, expected {expected} ({shape.tokens} tokens x "
                f"{shape.floats_per_token} float32): {_tail(printed)}",
            )
        embeddings = np.fromfile(output, dtype="<f4").reshape(shape.tokens, shape.floats_per_token)
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def _preset_shape(self) -> OutputShape:
        if self.spec.image_tokens is None or self.spec.floats_per_token is None:
            raise BackendError(
                "imgenc printed no tensor shapes and the model family has no published output shape: "
                "set backend.image_tokens and backend.floats_per_token",
            )
        return OutputShape(self.spec.image_tokens, self.spec.floats_per_token)
