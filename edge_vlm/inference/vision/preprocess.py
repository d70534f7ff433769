"""Preprocessing exactly as Rockchip's multimodal demo (``image_enc.cc``): RGB, padded to a square
with grey 128, image centred, resized with INTER_LINEAR to the encoder's input size, uint8 HWC.
No mean/std: the normalisation is inside the converted model."""

from __future__ import annotations

import cv2
import numpy as np

PAD_GREY = 128  # expand2square's Scalar(127.5) stored in a uint8 image


def centred_on_grey(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` centred on a grey canvas of at least ``width`` x ``height`` (itself if it is as large)."""
    rows, columns = rgb.shape[:2]
    if columns >= width and rows >= height:
        return rgb
    canvas = np.full((max(rows, height), max(columns, width), 3), PAD_GREY, dtype=np.uint8)
    top, left = (canvas.shape[0] - rows) // 2, (canvas.shape[1] - columns) // 2
    canvas[top : top + rows, left : left + columns] = rgb
    return canvas


def encoder_input(rgb: np.ndarray, size: int) -> np.ndarray:
    side = max(rgb.shape[:2])
    square = centred_on_grey(rgb, side, side)
    if side == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
