"""The ``rknn`` encoder: the .rknn model kept resident in the worker with rknn-toolkit-lite2.

RKNNLite (aarch64 only; the ``rknn`` extra) cannot query tensor shapes, so the output shape is
read from a first inference at load, on a grey frame of the preset's input size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_vlm.config.vlm import CORE_MASKS, ModelSpec, RknnEncoderConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.vision.shapes import check_against_preset, join_outputs

# The rknn-toolkit-lite2 release this encoder is written and tested for (the `rknn` extra pins it),
# and the Pythons its aarch64 Linux wheels exist for on PyPI (cp37 to cp312).
RKNN_LITE_RELEASE = "2.3.2"
RKNN_LITE_PYTHONS = ((3, 7), (3, 12))
RKNN_LITE_INSTALL = (f"pip install 'rknn-toolkit-lite2=={RKNN_LITE_RELEASE}' into edge_vlm's venv (the rknn extra); "
                     "it has wheels for aarch64 Linux with Python 3.7-3.12 only")


class RknnEncoder:
    def __init__(self, config: RknnEncoderConfig, spec: ModelSpec) -> None:
        self.config = config
        self.spec = spec
        self.input_size = spec.input_size
        self._rknn: Any = None

    def load(self) -> None:
        try:
            from rknnlite.api import RKNNLite  # noqa: PLC0415 - board-only, the rknn extra
        except ImportError:
            raise BackendError(
                f"the rknn encoder needs rknn-toolkit-lite2 ({RKNN_LITE_INSTALL}) and /usr/lib/librknnrt.so from "
                "Rockchip's rknpu2 runtime; encoder type imgenc needs no Python package",
            ) from None
        rknn = RKNNLite()
        if rknn.load_rknn(str(self.config.model.resolve())) != 0:
            raise BackendError(f"{self.config.model}: RKNNLite could not load it")
        if rknn.init_runtime(core_mask=CORE_MASKS[self.config.core_mask]) != 0:
            rknn.release()
            raise BackendError(f"RKNNLite could not start the NPU runtime for {self.config.model} "
                               f"(core_mask {self.config.core_mask})")
        self._rknn = rknn
        size = self.spec.input_size
        probe = self.encode(np.full((size, size, 3), 128, dtype=np.uint8))
        check_against_preset(probe.shape[0], probe.shape[1], self.spec, self.config.model)

    def close(self) -> None:
        if self._rknn is not None:
            self._rknn.release()
            self._rknn = None

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        if self._rknn is None:
            raise BackendError("the rknn encoder is not loaded")
        outputs = self._rknn.inference(inputs=[pixels[np.newaxis]], data_format="nhwc")
        if outputs is None:  # RKNNLite logs the error and returns None (rknn_lite.py, 2.3.2)
            raise BackendError(f"RKNNLite inference failed on {self.config.model}: see the worker's log; "
                               f"is the encoder's input {self.spec.input_size} px (backend.input_size)?")
        return join_outputs(list(outputs))
