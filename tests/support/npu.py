"""Configs for the NPU pipeline with the board's parts replaced at their interfaces:
the fake librkllmrt (tests/native) and the imgenc stand-in or a small ONNX encoder."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.imgenc_standin import embeddings_from_pixels, write_imgenc_wrapper, write_model
from tests.support.native import write_model_file
from tests.support.onnx_models import build_encoder, model_input, reference_output

# importable stand-ins for board-only Python packages (rknnlite): prepend to sys.path
STANDINS = Path(__file__).parent / "standins"
QWEN_TAGS = "<|vision_start|>|<|vision_end|>|<|image_pad|>"
ONNX_SIZE, ONNX_TOKENS, ONNX_DIM = 56, 16, 32


def vlm_backend(directory: Path, library: Path, *, abi: str, encoder: str = "imgenc",
                **overrides: Any) -> dict[str, Any]:
    """A `backend:` mapping for a daemon config: family qwen2-vl-2b (392 px, 196 x 1536) with the
    imgenc stand-in, or the same family overridden to a small ONNX encoder (56 px, 16 x 32)."""
    models = directory / "models"
    models.mkdir(exist_ok=True)
    backend: dict[str, Any] = {"type": "vlm", "family": "qwen2-vl-2b", "abort_grace_s": 1, "restart_max_delay_s": 1}
    if encoder == "imgenc":
        backend["encoder"] = {"type": "imgenc", "executable": str(write_imgenc_wrapper(directory)),
                              "model": str(write_model(models / "vision.rknn"))}
        tokens, floats = 196, 1536
    else:
        onnx_model = build_encoder(models / "vision.onnx", input_size=ONNX_SIZE, tokens=ONNX_TOKENS, dim=ONNX_DIM)
        backend["encoder"] = {"type": "onnx", "model": str(onnx_model)}
        backend.update(input_size=ONNX_SIZE, image_tokens=ONNX_TOKENS, floats_per_token=ONNX_DIM)
        tokens, floats = ONNX_TOKENS, ONNX_DIM
    llm_model = write_model_file(models / "model.rkllm", embed_dim=floats, image_tokens=tokens)
    backend["llm"] = {"model": str(llm_model), "library": str(library), "runtime_version": abi,
                      "max_context_len": 1024, "max_new_tokens": 64}
    backend.update(overrides)
    return backend


def signature(embeddings: np.ndarray) -> str:
    """What the test runtime prints for these embeddings (CRC-32 of their bytes)."""
    return f"{zlib.crc32(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes()):08x}"


def imgenc_signature(prepared: np.ndarray) -> str:
    """The signature for a frame prepared for the 392 px imgenc stand-in."""
    return signature(embeddings_from_pixels(prepared, 196, 1536, 1))


def onnx_signature(model: Path, prepared: np.ndarray) -> str:
    """The signature for a frame prepared for the ONNX encoder, run here by onnxruntime directly."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: model_input(model, prepared)})
    joined = np.concatenate([np.asarray(o).reshape(-1, np.shape(o)[-1]) for o in outputs], axis=1)
    assert np.allclose(joined, reference_output(model, prepared), atol=1e-5)  # the model does what it says
    return signature(joined)
