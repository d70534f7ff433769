"""The ``mqtt`` source: the last snapshot received for a camera (and, with a clip, the last
seconds of them)."""

from __future__ import annotations

import logging
import time

from edge_vlm.core.errors import ErrorCode, SourceError, TriggerError
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer

logger = logging.getLogger(__name__)


class LatestSnapshot:
    """Updated by the dispatcher thread; read by whatever thread triggers."""

    instant = True

    def __init__(self, camera: str, snapshot_topic: str, max_frame_age_s: float | None,
                 buffer: FrameBuffer | None = None) -> None:
        """``buffer``: where the snapshots received are kept for the camera's clip."""
        self.camera = camera
        self.buffer = buffer
        self._snapshot_topic = snapshot_topic
        self._max_age = max_frame_age_s
        self._frame: Frame | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def update(self, frame: Frame) -> None:
        self._frame = frame
        if self.buffer is not None:
            try:
                self.buffer.keep(frame)
            except Exception:  # the snapshot is described all the same: a clip is a bonus
                logger.exception("Camera %s: a snapshot could not be kept for clips", self.camera)

    def grab(self) -> Frame:
        frame = self._frame
        if frame is None:
            raise TriggerError(
                f"camera {self.camera!r} has no frame yet: its source is the last snapshot received, "
                f"and none has arrived on {self._snapshot_topic} or its snapshot_topics since start",
                code=ErrorCode.NO_FRAME,
            )
        age = time.time() - frame.captured_at
        if self._max_age is not None and age > self._max_age:
            raise SourceError(f"camera {self.camera!r}: its last snapshot is {age:.0f} s old, over "
                              f"max_frame_age_s = {self._max_age:g}", code=ErrorCode.STALE_FRAME)
        return frame
