"""The seconds before a trigger: a camera's last frames, kept small, so that a description can say
what happened and not only what is (issue 16).

A persistent RTSP reader hands a frame every ``1 / fps`` seconds to its camera's ``FrameBuffer``
(an ``http`` camera's poller on the same timer, an ``mqtt`` camera's snapshots as they come, at most
as often), which
keeps it downscaled to ``long_side`` pixels and JPEG-compressed, with the small blurred grey
picture motion detection compares (edge_vlm.ingest.motion), and the share of its pixels that
changed since the frame kept before (outside the camera's ``motion.ignore`` areas, such as a
clock). Frames older than ``seconds`` are dropped as new ones come, so a buffer never holds more
than ``capacity`` frames; each is at most its raw downscaled size, which makes the clip settings'
``most_bytes`` the most a buffer can hold (a JPEG of a camera frame is typically a tenth of it). That
counts a square frame and a square grey picture: a portrait frame's grey picture is taller, but its
frame smaller by more, for any frame up to 3·long_side²/160² times as high as wide (3:1 at the
smallest long_side, 48:1 at the default).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_vlm.config.sources import ClipConfig
from edge_vlm.frames.decode import Frame
from edge_vlm.ingest.motion import changed_share, small_grey, watched_area

QUALITY = 80  # JPEG quality of a kept frame
SNAPSHOT_GAP = 0.75  # the least time between two snapshots kept, as a share of 1 / fps


@dataclass(frozen=True)
class KeptFrame:
    captured_at: float  # time.time() of the frame
    jpeg: bytes = field(repr=False)  # the frame, downscaled, as JPEG
    size: tuple[int, int]  # its width and height as kept
    thumb: np.ndarray = field(repr=False)  # small blurred grey (ingest.motion.small_grey)
    change: float  # the share of pixels that changed from the frame kept before (0-1; the first: 0)

    def difference(self, other: KeptFrame) -> float:
        """How different two kept frames look: the share of their pixels that changed (0-1); frames
        of another shape (a Frigate snapshot cropped to its object) are wholly different."""
        share = changed_share(self.thumb, other.thumb)
        return 1.0 if share is None else share

    def rgb(self) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None  # encoded by offer()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """``image`` scaled down (never up) so that its longer side is at most ``long_side``."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


class FrameBuffer:
    """One camera's last ``seconds`` of frames at ``fps``, thread-safe (the reader adds, captures read)."""

    def __init__(self, clip: ClipConfig, ignore: list[tuple[float, float, float, float]] | None = None) -> None:
        """``ignore``: areas where change does not count (the camera's motion.ignore)."""
        self.seconds, self.fps, self.long_side = clip.seconds, clip.fps, clip.long_side
        self._ignore = ignore or []
        self.capacity = clip.capacity
        self._frames: deque[KeptFrame] = deque(maxlen=self.capacity)
        self._lock = threading.Lock()
        self._last_kept = -math.inf  # time.monotonic() of the last frame kept

    def due(self) -> bool:
        """Whether a frame is wanted now (``1 / fps`` since the last kept one): the reader asks first,
        so that it decodes only frames that will be kept."""
        return time.monotonic() - self._last_kept >= 1 / self.fps

    def offer(self, bgr: np.ndarray, captured_at: float) -> None:
        """Keep a frame (the reader's thread): downscaled, compressed; older ones past ``seconds`` go."""
        self._last_kept = time.monotonic()
        with self._lock:
            previous = self._frames[-1] if self._frames else None
        kept = self._kept(bgr, captured_at, previous)
        if kept is None:
            return
        with self._lock:
            self._frames.append(kept)
            while self._frames and self._frames[0].captured_at < captured_at - self.seconds:
                self._frames.popleft()

    def keep(self, frame: Frame) -> None:
        """Keep a decoded frame (a snapshot received; one thread keeps) unless it was taken less than
        ``SNAPSHOT_GAP / fps`` after the newest kept: a camera that publishes at ``fps``, early or late
        by a quarter of its period, has every frame kept; a faster one is thinned."""
        with self._lock:
            newest = self._frames[-1].captured_at if self._frames else None
        if newest is None or frame.captured_at - newest >= SNAPSHOT_GAP / self.fps:
            self.offer_frame(frame)

    def offer_frame(self, frame: Frame) -> None:
        """Keep a decoded frame (RGB), due or not: a poll on the buffer's own timer."""
        self.offer(cv2.cvtColor(frame.pixels, cv2.COLOR_RGB2BGR), frame.captured_at)

    def as_kept(self, rgb: np.ndarray, captured_at: float) -> KeptFrame | None:
        """A frame (RGB) as the buffer would keep it, after the newest kept before it, without keeping
        it: the moment of a trigger, which ends its clip (and may be kept already, a snapshot's)."""
        with self._lock:
            previous = next((f for f in reversed(self._frames) if f.captured_at < captured_at), None)
        return self._kept(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), captured_at, previous)

    def _kept(self, bgr: np.ndarray, captured_at: float, previous: KeptFrame | None) -> KeptFrame | None:
        small = fit_long_side(bgr, self.long_side)
        ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        jpeg = encoded.tobytes() if ok else b""
        if not jpeg or len(jpeg) > small.size:  # noise, say: never more than the raw frame (the stated bound)
            return None
        thumb = small_grey(small)
        share = None if previous is None else changed_share(previous.thumb, thumb, watched_area(thumb.shape,
                                                                                                  self._ignore))
        change = share or 0.0
        return KeptFrame(captured_at, jpeg, (small.shape[1], small.shape[0]), thumb, change)

    def frames(self, since: float) -> list[KeptFrame]:
        """The frames kept whose time is ``since`` (``time.time()``) or later, oldest first."""
        with self._lock:
            return [f for f in self._frames if f.captured_at >= since]
