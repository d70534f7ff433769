"""``RKNNLite`` with the interface of rknn-toolkit-lite2 2.3.2 (rknn_lite.py), running an ONNX
model named as the .rknn on onnxruntime: load_rknn / init_runtime return 0 or -1, inference
returns a list of numpy arrays or None on any error (the real one logs and returns None)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import onnxruntime


class RKNNLite:
    NPU_CORE_AUTO = 0
    NPU_CORE_0 = 1
    NPU_CORE_1 = 2
    NPU_CORE_2 = 4
    NPU_CORE_0_1 = 3
    NPU_CORE_0_1_2 = 7
    NPU_CORE_ALL = 0xFFFF
    calls: ClassVar[list[tuple[str, Any]]] = []  # what tests can check was asked of the runtime

    def __init__(self, verbose: bool = False, verbose_file: str | None = None) -> None:
        self._path: str | None = None
        self._session: Any = None

    def load_rknn(self, path: str) -> int:
        self.calls.append(("load_rknn", path))
        try:
            with open(path, "rb"):
                pass
        except OSError:
            return -1
        self._path = path
        return 0

    def init_runtime(self, target: str | None = None, device_id: str | None = None, async_mode: bool = False,
                     core_mask: int = NPU_CORE_AUTO) -> int:
        self.calls.append(("init_runtime", core_mask))
        if self._path is None:
            return -1
        try:
            self._session = onnxruntime.InferenceSession(self._path, providers=["CPUExecutionProvider"])
        except Exception:  # the real runtime reports -1 whatever went wrong
            return -1
        return 0

    def inference(self, inputs: list[np.ndarray], data_type: str | None = None, data_format: str | None = None,
                  inputs_pass_through: list[int] | None = None, get_frame_id: bool = False) -> list[np.ndarray] | None:
        self.calls.append(("inference", data_format))
        try:
            name = self._session.get_inputs()[0].name
            outputs = list(self._session.run(None, {name: inputs[0]}))
        except Exception:  # RKNNLite.inference logs and returns None on any error
            return None
        if (log := os.environ.get("EDGE_VLM_ENCODER_PASSES")):  # one line per encoder pass (imgenc_standin)
            with open(log, "a") as passes:
                passes.write(f"{self._path}\n")
        return outputs

    def release(self) -> None:
        self.calls.append(("release", None))
        self._session = None
