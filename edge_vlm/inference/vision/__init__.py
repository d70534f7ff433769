"""Vision encoders: an image in, embeddings out (float32 [tokens, floats per token]).

One file per encoder type. Each reads its input size and output shape from the model where the
model can tell, and checks them against the model family's preset.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_vlm.config.vlm import EncoderConfig, ImgencEncoderConfig, ModelSpec, RknnEncoderConfig


class Encoder(Protocol):
    input_size: int  # the square input the encoder takes, pixels

    def load(self) -> None: ...

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels``: uint8 RGB, input_size x input_size x 3 -> C-contiguous float32 [tokens, floats]."""
        ...

    def close(self) -> None: ...


def create_encoder(config: EncoderConfig, spec: ModelSpec) -> Encoder:
    """The encoder ``config`` asks for, not loaded yet; board-only imports happen in its load()."""
    if isinstance(config, ImgencEncoderConfig):
        from edge_vlm.inference.vision.imgenc import ImgencEncoder  # noqa: PLC0415

        return ImgencEncoder(config, spec)
    if isinstance(config, RknnEncoderConfig):
        from edge_vlm.inference.vision.rknn import RknnEncoder  # noqa: PLC0415

        return RknnEncoder(config, spec)
    from edge_vlm.inference.vision.onnx import OnnxEncoder  # noqa: PLC0415

    return OnnxEncoder(config, spec)
