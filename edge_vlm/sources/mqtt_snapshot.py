"""The ``mqtt`` source: the last snapshot received for a camera."""

from __future__ import annotations

from edge_vlm.errors import TriggerError
from edge_vlm.frames import Frame


class LatestSnapshot:
    """Used by the dispatcher thread only."""

    def __init__(self, camera: str, snapshot_topic: str) -> None:
        self._camera = camera
        self._snapshot_topic = snapshot_topic
        self._frame: Frame | None = None

    def update(self, frame: Frame) -> None:
        self._frame = frame

    def grab(self) -> Frame:
        if self._frame is None:
            raise TriggerError(
                f"camera {self._camera!r} has no frame yet: its source is the last snapshot received, "
                f"and none has arrived on {self._snapshot_topic} or its snapshot_topics since start",
                code="no_frame",
            )
        return self._frame
