"""The vision encoder kept resident against started once per frame, as a subprocess imgenc is.

Both sides run the same ONNX encoder (392 px input, 196 tokens x 1536, with a 1536x1536 layer so
that loading it is not free) on the same 50 frames:
- resident: edge_vlm's `onnx` encoder, loaded once, encoding frame after frame;
- per frame: a new process per frame that loads the model, encodes one image file and writes
  img_vec.bin, which the caller reads back: what running Rockchip's imgenc per frame costs.
On a board the per-frame side also reloads a 1-1.5 GB .rknn each time (models/README.md: the
Qwen2-VL-2B encoder takes 1436.5 MB).

Run: .venv/bin/python -m benchmarks.encoder_resident [FRAMES]   (default 50)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks import count_argument
from edge_vlm.config.vlm import OnnxEncoderConfig, VlmBackendConfig
from edge_vlm.frames import decode_image
from edge_vlm.inference.vision.onnx import OnnxEncoder
from edge_vlm.inference.vision.preprocess import encoder_input
from tests.support import images

SIZE, TOKENS, DIM = 392, 196, 1536
GRID = 14  # 14 x 14 patches of 28 px = 196 tokens

ONE_SHOT = """
import sys, numpy as np, cv2, onnxruntime
model, image = sys.argv[1], sys.argv[2]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
pixels = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)[np.newaxis]
out = session.run(None, {session.get_inputs()[0].name: pixels})[0]
np.ascontiguousarray(out, dtype="<f4").tofile("img_vec.bin")
"""


def build_model(path: Path) -> Path:
    """uint8 NHWC image -> patch means [196, 3] -> [196, 1536] -> tanh -> x [1536, 1536] -> [196, 1536]."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[SIZE // GRID] * 2,
                         strides=[SIZE // GRID] * 2),
        helper.make_node("Transpose", ["pooled"], ["patches"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["patches", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["embeddings"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([TOKENS, 3], np.int64), "shape"),
        numpy_helper.from_array((rng.standard_normal((3, DIM)) / 100).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((DIM, DIM)) / 40).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes, "encoder", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [TOKENS, DIM])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def frames(count: int) -> list[np.ndarray]:
    decoded = [decode_image(images.jpeg(1280, 720, seed=n), camera="c", captured_at=0, max_bytes=10**8,
                            max_pixels=10**8) for n in range(count)]
    return [encoder_input(f.pixels, SIZE) for f in decoded]


def resident(model: Path, pixels: list[np.ndarray]) -> tuple[float, float, list[np.ndarray]]:
    config = VlmBackendConfig.model_validate({
        "type": "vlm", "family": "qwen2-vl-2b", "encoder": {"type": "onnx", "model": str(model)},
        "llm": {"model": "/unused.rkllm"}})
    assert isinstance(config.encoder, OnnxEncoderConfig)
    started = time.perf_counter()
    encoder = OnnxEncoder(config.encoder, config.spec)
    encoder.load()
    load_s = time.perf_counter() - started
    outputs, times = [], []
    for frame in pixels:
        started = time.perf_counter()
        outputs.append(encoder.encode(frame))
        times.append(time.perf_counter() - started)
    return load_s, statistics.median(times), outputs


def per_frame(model: Path, pixels: list[np.ndarray], work: Path) -> tuple[float, list[np.ndarray]]:
    outputs, times = [], []
    for frame in pixels:
        started = time.perf_counter()
        cv2.imwrite(str(work / "frame.bmp"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        subprocess.run([sys.executable, "-c", ONE_SHOT, str(model), str(work / "frame.bmp")], cwd=work, check=True)
        outputs.append(np.fromfile(work / "img_vec.bin", dtype="<f4").reshape(TOKENS, DIM))
        times.append(time.perf_counter() - started)
    return statistics.median(times), outputs


def main() -> None:
    count = count_argument(__doc__, 50)
    pixels = frames(count)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_model(work / "vision.onnx")
        load_s, resident_s, resident_out = resident(model, pixels)
        per_frame_s, per_frame_out = per_frame(model, pixels, work)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(resident_out, per_frame_out, strict=True))
    print(f"{count} frames, ONNX encoder {SIZE} px -> {TOKENS} x {DIM}, on the CPU")
    print(f"resident:  load once {load_s * 1000:.0f} ms, then {resident_s * 1000:.1f} ms per frame (median)")
    print(f"per frame: {per_frame_s * 1000:.0f} ms per frame (median): process start, model load, encode, file")
    print(f"per frame / resident = {per_frame_s / resident_s:.1f}x; the same embeddings either way")


if __name__ == "__main__":
    main()
