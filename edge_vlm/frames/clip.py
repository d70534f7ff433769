"""A clip: what happened in a camera's last seconds, as one image that the backend reads in one pass.

From the frames a camera's buffer kept (edge_vlm.frames.buffer) and the frame of the moment of the
trigger, ``key_frames`` picks at most K: always the newest; then those that changed most from the
frame before them, no two closer in time than a share of the span, never one that looks like one
already picked. ``composite`` lays them out in a grid, oldest first, read left to right and top
to bottom, each labelled with its time before the newest: one image, so one vision-encoder pass
and the image tokens of one frame, whatever K is (the multi-image input of RKLLM 1.3 costs an
encoder pass and the image tokens per frame; benchmarks/clip_cost.py compares them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_vlm.frames.buffer import KeptFrame

SAME = 0.002  # frames of which a smaller share of pixels changed look the same (a person far off: ~0.008)
LABEL_SCALE = 0.0016  # label text height per pixel of cell width


@dataclass(frozen=True)
class Clip:
    """The frames of a clip's composite, oldest first: their times (``time.time()``) and layout; or
    (``sent``) the pictures a request sent, in their order, numbered."""

    times: tuple[float, ...]
    columns: int
    rows: int
    sent: bool = False

    @property
    def grid(self) -> tuple[int, int, int] | None:
        """Columns, rows and frames of a composite; None for the frame of the moment alone."""
        return (self.columns, self.rows, len(self.times)) if len(self.times) > 1 else None

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0

    def reading(self) -> str:
        """How to read the composite, for the prompt."""
        if self.sent:
            return (f"The image is a grid of the {len(self.times)} pictures sent, {self.columns} across and "
                    f"{self.rows} down, read left to right and top to bottom, each labelled with its number "
                    "in the order they were sent.")
        return (f"The image is a grid of {len(self.times)} frames from {span_words(self.span_s)}, "
                f"{self.columns} across and {self.rows} down, oldest first, read left to right and top to "
                "bottom; the last one is now. Each is labelled with how long before now it was taken.")


def span_words(seconds: float) -> str:
    """The time a clip covers, for a prompt: "the last 8 seconds"."""
    whole = max(1, round(seconds))
    return "the last second" if whole == 1 else f"the last {whole} seconds"


def key_frames(frames: Sequence[KeptFrame], k: int) -> list[KeptFrame]:
    """At most ``k`` of ``frames`` (oldest first, the last the newest), oldest first: the newest, then
    the most changed, spread in time (no two within span / 2k), none looking like one picked."""
    if not frames:
        return []
    newest = frames[-1]
    picked = [newest]
    gap = (newest.captured_at - frames[0].captured_at) / (2 * k) if k > 1 else math.inf
    for frame in sorted(frames[:-1], key=lambda f: f.change, reverse=True):
        if len(picked) >= k:
            break
        if any(abs(frame.captured_at - p.captured_at) < gap or frame.difference(p) < SAME for p in picked):
            continue
        picked.append(frame)
    return sorted(picked, key=lambda f: f.captured_at)


def layout(n: int) -> tuple[int, int]:
    """Columns and rows of a grid for ``n`` frames: near square, wider than high."""
    columns = math.ceil(math.sqrt(n))
    return columns, math.ceil(n / columns)


def composite(frames: Sequence[KeptFrame]) -> tuple[np.ndarray, Clip]:
    """The frames in a grid, each labelled with its time before the newest, and its Clip."""
    newest = frames[-1].captured_at
    labels = ["now" if f is frames[-1] else f"-{newest - f.captured_at:.1f} s" for f in frames]
    columns, rows = layout(len(frames))
    return grid([f.rgb() for f in frames], labels), Clip(tuple(f.captured_at for f in frames), columns, rows)


def numbered(pictures: Sequence[np.ndarray], captured_at: float) -> tuple[np.ndarray, Clip]:
    """The pictures a request sent, in a grid in their order, each labelled with its number, and its Clip."""
    columns, rows = layout(len(pictures))
    cell = (max(p.shape[1] for p in pictures), max(p.shape[0] for p in pictures))  # none made small for an icon
    return (grid(pictures, [str(n) for n in range(1, len(pictures) + 1)], cell),
            Clip((captured_at,) * len(pictures), columns, rows, sent=True))


def grid(pictures: Sequence[np.ndarray], labels: Sequence[str], cell: tuple[int, int] | None = None) -> np.ndarray:
    """RGB ``pictures`` in a grid (``layout``), each labelled: cells ``cell`` (width, height) or the
    size of the last one, another size fitted into its cell's top left."""
    columns, rows = layout(len(pictures))
    width, height = cell or (pictures[-1].shape[1], pictures[-1].shape[0])
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        rgb = picture
        if (rgb.shape[1], rgb.shape[0]) != (width, height):  # fitted into the cell, not stretched
            scale = min(width / rgb.shape[1], height / rgb.shape[0])
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (index // columns) * height, (index % columns) * width
        canvas[top:top + rgb.shape[0], left:left + rgb.shape[1]] = rgb
        _label(canvas, left, top, width, label)
    return canvas


def _label(canvas: np.ndarray, left: int, top: int, width: int, text: str) -> None:
    scale = max(0.4, width * LABEL_SCALE)
    thickness = max(1, round(scale * 2))
    (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_height // 3)
    cv2.rectangle(canvas, (left, top), (left + text_width + 2 * pad, top + text_height + baseline + 2 * pad),
                  (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (left + pad, top + pad + text_height), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)
