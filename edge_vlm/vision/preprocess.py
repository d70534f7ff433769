"""Preprocessing exactly as Rockchip's multimodal demo (``image_enc.cc``): RGB, padded to a square
with grey 128, image centred, resized with INTER_LINEAR to the encoder's input size, uint8 HWC.
No mean/std: the normalisation is inside the converted model."""

from __future__ import annotations

import cv2
import numpy as np

PAD_GREY = 128  # expand2square's Scalar(127.5) stored in a uint8 image


def encoder_input(rgb: np.ndarray, size: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    side = max(height, width)
    if height == width:
        square = rgb
    else:
        square = np.full((side, side, 3), PAD_GREY, dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = rgb
    if side == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
