"""An ``http`` camera with a clip: its snapshot URL polled every ``1 / clip.fps`` seconds into the
camera's buffer, so that a trigger can be described with what happened before it.

Each poll is one GET, as a trigger's grab is (``HttpSnapshotSource``: its timeout, auth and limits);
the trigger still fetches its own, current frame. A camera that fails a poll is logged once, and
again once it answers: the clip misses those seconds, and nothing else is held up.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2

from edge_vlm.core.errors import InputError
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer
from edge_vlm.frames.sources.http import HttpSnapshotSource

logger = logging.getLogger(__name__)

STOP_WAIT_S = 2.0  # stop() waits this long at most for a poll in flight (stopping the source ends it)


class PolledHttpSource:
    """An ``HttpSnapshotSource`` whose snapshots are also fetched on a timer into ``buffer``."""

    instant = False

    def __init__(self, snapshots: HttpSnapshotSource, buffer: FrameBuffer) -> None:
        self.camera = snapshots.camera
        self.buffer = buffer
        self._snapshots = snapshots
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._snapshots.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name=f"clip-poll-{self.camera}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._snapshots.stop()  # ends a poll in flight

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)

    def grab(self) -> Frame:
        return self._snapshots.grab()

    def _poll(self) -> None:
        failing = False
        period = 1 / self.buffer.fps
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + period, time.monotonic())  # a slow camera is polled as often as it answers
            try:
                frame = self._snapshots.grab()
            except InputError as error:
                if not failing and not self._stop.is_set():
                    logger.warning("Camera %s: snapshot for clips failed (%s); its clips miss frames until it "
                                   "answers", self.camera, error)
                failing = True
                continue
            try:
                self.buffer.offer(cv2.cvtColor(frame.pixels, cv2.COLOR_RGB2BGR), frame.captured_at)
            except Exception:  # the poller must go on: a clip is a bonus
                logger.exception("Camera %s: a snapshot could not be kept for clips", self.camera)
            if failing:
                logger.info("Camera %s: snapshots for clips come again", self.camera)
                failing = False
