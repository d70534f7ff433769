"""A stand-in for Rockchip's ``imgenc`` demo program (rknn-llm v1.2.1-v1.3.0), for machines without an NPU.

Command line, output and exit codes follow the real one (rknn-llm examples/multimodal_model_demo/deploy)::

    imgenc <model_path> <image_path> <core_num>

It writes ``./img_vec.bin`` into its current working directory: raw little-endian float32, no header,
layout [token][output][dim]. The "model" is a text file of ``key=value`` lines (see :func:`write_model`)
instead of an ``.rknn``; the embeddings are a smooth deterministic function of the preprocessed pixels,
which :func:`expected_embeddings` computes in-process for comparisons.

Tests run it through :func:`write_imgenc_wrapper` (a ``#!/bin/sh`` file named ``imgenc``). This module
must stay importable as a plain script: it imports nothing from the project.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

BEHAVIOURS = ("ok", "run_fail", "no_file", "short_file", "garbage_file", "init_fail")
"""``ok``: normal run. ``run_fail``: prints ``run_imgenc fail! ret=-1`` and, like the real program, still
writes a file of the right size (zeros here; the real one writes an uninitialised buffer), exit 0.
``no_file``: prints ``run_imgenc fail! ret=-1`` and writes nothing (as when the file cannot be created;
the real program ignores that error), exit 0. ``short_file``: a file with half the tokens, exit 0.
``garbage_file``: right size, all NaN, exit 0. ``init_fail``: ``rknn_init fail! ret=-1`` and
``init_imgenc fail! ret=-1 model_path=...``, exit 255 (also what a missing or unparsable model gives)."""

PASSES_ENV = "EDGE_VLM_ENCODER_PASSES"
"""If set, a file that gets a line per encoder pass (the image's path); the RKNNLite stand-in writes it too."""

DEFAULTS: dict[str, Any] = {
    "input_size": 392,
    "tokens": 196,
    "dim": 1536,
    "outputs": 1,
    "delay_ms": 0,
    "behaviour": "ok",
}
"""Model-file keys and their defaults (Qwen2-VL-2B's encoder: 392x392 input, 196 tokens x 1536)."""

_USAGE = (
    "Usage:\n"
    "  {prog} <model_path> <image_path> <core_num>\n\n"
    "Arguments:\n"
    "  model_path       Path to the model file (e.g., ./internvl3-1b.rkllm)\n"
    "  image_path       Path to the input image (e.g., ./demo.jpg)\n"
    "  core_num         Number of NPU cores to use (e.g., 1/2/3)\n"
)
_CV_ERROR = (
    "terminate called after throwing an instance of 'cv::Exception'\n"
    "  what():  OpenCV(3.4.5) /home/opencv/modules/imgproc/src/color.cpp:181: error: (-215:Assertion failed)"
    " !_src.empty() in function 'cvtColor'\n\n"
)


def write_model(path: Path, **keys: int | str) -> Path:
    """Write a stand-in "model" file of ``key=value`` lines; unset keys take :data:`DEFAULTS`."""
    unknown = set(keys) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown model keys: {sorted(unknown)}")
    model = _validated({**DEFAULTS, **keys})
    path.write_text("".join(f"{key}={value}\n" for key, value in model.items()), encoding="utf-8")
    return path


def read_model(path: Path) -> dict[str, Any]:
    """Parse a model file (blank lines and ``#`` comments allowed); raises ValueError if it is not one."""
    model = dict(DEFAULTS)
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or key not in DEFAULTS:
            raise ValueError(f"not a model line: {raw!r}")
        model[key] = value if key == "behaviour" else int(value)
    return _validated(model)


def _validated(model: dict[str, Any]) -> dict[str, Any]:
    if model["behaviour"] not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {model['behaviour']!r}")
    for key in ("input_size", "tokens", "dim", "outputs"):
        if int(model[key]) < 1:
            raise ValueError(f"{key} must be >= 1")
    _patch_grid(int(model["tokens"]), int(model["input_size"]))  # raises if the patches would be empty
    return model


def preprocess(image_path: Path | str, input_size: int) -> npt.NDArray[np.uint8]:
    """The demo's preprocessing: imread (BGR) -> RGB -> pad to a centred square filled with 128 ->
    resize to input_size x input_size with INTER_LINEAR. Raises ValueError for an unreadable image."""
    bgr = cv2.imread(str(image_path))
    if bgr is None:
        raise ValueError(f"cannot read image {image_path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    square = rgb
    if width != height:
        size = max(width, height)
        square = np.full((size, size, 3), 128, dtype=np.uint8)
        x, y = (size - width) // 2, (size - height) // 2
        square[y : y + height, x : x + width] = rgb
    resized = cv2.resize(square, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _patch_grid(tokens: int, size: int) -> list[tuple[int, int, int, int]]:
    """Token t's patch (y0, y1, x0, x1): isqrt(T) bands of rows, T // rows patches per band, the
    remainder spread one extra patch per band over the last bands. Row-major token order."""
    rows = math.isqrt(tokens)
    base, extra = divmod(tokens, rows)
    if rows > size or base + (1 if extra else 0) > size:
        raise ValueError(f"{tokens} tokens do not fit a {size}x{size} image")
    patches = []
    for r in range(rows):
        cols = base + (1 if r >= rows - extra else 0)
        y0, y1 = r * size // rows, (r + 1) * size // rows
        patches += [(y0, y1, c * size // cols, (c + 1) * size // cols) for c in range(cols)]
    return patches


def embeddings_from_pixels(
    pixels: npt.NDArray[np.uint8], tokens: int, dim: int, outputs: int
) -> npt.NDArray[np.float32]:
    """embed[t, o*dim + d] from the mean RGB of token t's patch; shape (tokens, outputs * dim), float32."""
    means = (
        np.array(
            [
                pixels[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
                for y0, y1, x0, x1 in _patch_grid(tokens, pixels.shape[0])
            ]
        )
        / 255.0
    )  # (T, 3) in [0, 1]
    t = np.arange(tokens, dtype=np.float64)[:, None, None]
    o = np.arange(outputs, dtype=np.float64)[None, :, None]
    d = np.arange(dim, dtype=np.float64)[None, None, :]
    r, g, b = (means[:, i][:, None, None] for i in range(3))
    embed = (
        0.5 * np.sin(2 * np.pi * r * (1 + d % 13) + 0.1 * d + o)
        + 0.3 * np.cos(2 * np.pi * g * (1 + (d + o) % 7) + 0.05 * t)
        + 0.2 * np.sin(2 * np.pi * b * (1 + d % 5) + 0.7 * o)
    )
    return embed.reshape(tokens, outputs * dim).astype(np.float32)


def expected_embeddings(
    image_path: Path | str,
    *,
    input_size: int = 392,
    tokens: int = 196,
    dim: int = 1536,
    outputs: int = 1,
    **_other_keys: object,
) -> npt.NDArray[np.float32]:
    """What the stand-in writes for this image with ``behaviour=ok``: shape (tokens, outputs * dim), i.e.
    img_vec.bin reshaped per token, outputs concatenated in output-index order. Accepts (and ignores)
    the other model keys so that the ``write_model`` keyword arguments can be passed as they are."""
    return embeddings_from_pixels(preprocess(image_path, input_size), tokens, dim, outputs)


def write_imgenc_wrapper(directory: Path) -> Path:
    """Create ``directory/imgenc``: an executable sh script that execs this Python file with "$@"."""
    wrapper = directory / "imgenc"
    wrapper.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return wrapper


def _tensor_line(index: int, name: str, dims: list[int], fmt: str) -> str:
    n_elems = math.prod(dims)
    shown = ", ".join(str(v) for v in [*dims, 0, 0, 0, 0][:4])  # the demo prints dims[0..3] always
    return (
        f"  index={index}, name={name}, n_dims={len(dims)}, dims=[{shown}], n_elems={n_elems}, "
        f"size={n_elems * 2}, fmt={fmt}, type=FP16, qnt_type=AFFINE, zp=0, scale={1.0:f}"
    )


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stderr.write(_USAGE.format(prog=argv[0] if argv else "imgenc"))
        return 255
    model_path, image_path = argv[1], argv[2]
    try:
        core_num = int(argv[3].strip().split()[0])  # atoi, roughly
    except (ValueError, IndexError):
        core_num = 0
    started = time.perf_counter()
    try:
        model = read_model(Path(model_path))
    except (OSError, ValueError, UnicodeDecodeError):
        model = {**DEFAULTS, "behaviour": "init_fail"}
    if model["behaviour"] == "init_fail":
        print("rknn_init fail! ret=-1")
        print(f"init_imgenc fail! ret=-1 model_path={model_path}")
        return 255
    size, tokens, dim, outputs = (int(model[k]) for k in ("input_size", "tokens", "dim", "outputs"))
    print(f"===the core num is {core_num}===")
    print(f"model input num: 1, output num: {outputs}")
    print("input tensors:")
    print(_tensor_line(0, "pixel", [1, size, size, 3], "NHWC"))
    print("output tensors:")
    for i in range(outputs):
        print(_tensor_line(i, f"output_{i}", [tokens, dim], "UNDEFINED"))
    print(f"model input height={size}, width={size}, channel=3")
    print(f"main: Model loaded in {(time.perf_counter() - started) * 1000:8.2f} ms")

    try:
        pixels = preprocess(image_path, size)
    except ValueError:
        sys.stderr.write(_CV_ERROR)  # C++ stdout is not flushed by abort(); nor is Python's
        sys.stderr.flush()
        os.abort()
    started = time.perf_counter()
    embed = embeddings_from_pixels(pixels, tokens, dim, outputs)
    time.sleep(int(model["delay_ms"]) / 1000)
    behaviour = model["behaviour"]
    if behaviour in ("run_fail", "no_file"):
        print("run_imgenc fail! ret=-1")
        embed = np.zeros_like(embed)
    elif behaviour == "short_file":
        embed = embed[: tokens // 2]
    elif behaviour == "garbage_file":
        embed = np.full_like(embed, np.nan)
    print(f"main: Encoder the image cost {(time.perf_counter() - started) * 1000:8.2f} ms")
    if (log := os.environ.get(PASSES_ENV)):  # one line per encoder pass, for counting NPU work
        with open(log, "a") as passes:
            passes.write(f"{image_path}\n")
    if behaviour != "no_file":
        Path("img_vec.bin").write_bytes(embed.astype("<f4").tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
