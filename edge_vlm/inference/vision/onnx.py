"""The ``onnx`` encoder: onnxruntime on the CPU (for boards without the .rknn, and for testing).

Input size, layout (NHWC or NCHW) and type (uint8, or float normalised with the configured
mean/std) are read from the model's input; the output shape from a first run at load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_vlm.config.vlm import ModelSpec, OnnxEncoderConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.vision.shapes import check_against_preset, join_outputs


class OnnxEncoder:
    def __init__(self, config: OnnxEncoderConfig, spec: ModelSpec) -> None:
        self.config = config
        self.spec = spec
        self.input_size = spec.input_size
        self._session: Any = None
        self._nchw = False
        self._float = False

    def load(self) -> None:
        try:
            import onnxruntime  # noqa: PLC0415 - optional dependency, the onnx extra
        except ImportError:
            raise BackendError("the onnx encoder needs onnxruntime: pip install onnxruntime into edge_vlm's venv "
                               "(the onnx extra)") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.config.model.resolve()), options, providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise BackendError(f"{self.config.model}: onnxruntime cannot load it: {exc}") from None
        model_input = self._session.get_inputs()[0]
        shape = model_input.shape
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise BackendError(f"{self.config.model}: expected an image input [1,H,W,3] or [1,3,H,W], got {shape}")
        self._nchw = shape[1] == 3 and shape[3] != 3
        height, width = (shape[2], shape[3]) if self._nchw else (shape[1], shape[2])
        if isinstance(height, int) and isinstance(width, int):
            if height != width:
                raise BackendError(f"{self.config.model}: the input is {width}x{height}, not square")
            self.input_size = height
        self._float = model_input.type != "tensor(uint8)"
        probe = self.encode(np.full((self.input_size, self.input_size, 3), 128, dtype=np.uint8))
        check_against_preset(probe.shape[0], probe.shape[1], self.spec, self.config.model)

    def close(self) -> None:
        self._session = None

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise BackendError("the onnx encoder is not loaded")
        tensor: np.ndarray = pixels[np.newaxis]
        if self._float:
            mean = np.asarray(self.config.mean or self.spec.mean, dtype=np.float32)
            std = np.asarray(self.config.std or self.spec.std, dtype=np.float32)
            tensor = (tensor.astype(np.float32) - mean) / std
        if self._nchw:
            tensor = tensor.transpose(0, 3, 1, 2)
        name = self._session.get_inputs()[0].name
        try:
            outputs = self._session.run(None, {name: np.ascontiguousarray(tensor)})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise BackendError(f"onnxruntime failed: {exc}") from None
        return join_outputs(outputs)
