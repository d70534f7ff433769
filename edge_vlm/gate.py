"""Has the scene changed? A 64-bit difference hash (dHash) of a frame, compared bit by bit.

Robust to JPEG noise and small light changes, cheap (a 9x8 grey thumbnail), and blind to what a
person would not call a change. Used to skip describing the same scene again.
"""

from __future__ import annotations

import cv2
import numpy as np


def scene_hash(rgb: np.ndarray) -> int:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    thumb = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (thumb[:, 1:] > thumb[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def unchanged(previous: int, current: int, max_distance: int) -> bool:
    """Whether at most ``max_distance`` of the 64 bits differ."""
    return (previous ^ current).bit_count() <= max_distance
