"""The ``mqtt`` source: the last snapshot received for a camera."""

from __future__ import annotations

import time

from edge_vlm.core.errors import ErrorCode, SourceError, TriggerError
from edge_vlm.frames import Frame


class LatestSnapshot:
    """Updated by the dispatcher thread; read by whatever thread triggers."""

    instant = True

    def __init__(self, camera: str, snapshot_topic: str, max_frame_age_s: float | None) -> None:
        self.camera = camera
        self._snapshot_topic = snapshot_topic
        self._max_age = max_frame_age_s
        self._frame: Frame | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def update(self, frame: Frame) -> None:
        self._frame = frame

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
