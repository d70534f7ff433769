"""An ``http`` camera with a clip: its snapshot URL polled every ``1 / clip.fps`` seconds into the
camera's buffer, so that a trigger can be described with what happened before it.

Each poll is one GET, as a trigger's grab is (``HttpSnapshotSource``: its timeout, auth and limits);
the trigger still fetches its own, current frame. A camera that fails a poll is logged once, and
again once it answers, and polled less often while it fails (up to every ``MAX_BACKOFF_S``): the
clip misses those seconds, and nothing else is held up.
"""

from __future__ import annotations

import logging
import threading
import time

from edge_vlm.core.errors import InputError
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer
from edge_vlm.frames.sources.http import HttpSnapshotSource

logger = logging.getLogger(__name__)

# stop() waits this long at most, from the first request_stop(), for a poll in flight (stopping the
# source ends it); sources stopped together share the wait.
STOP_WAIT_S = 2.0
MAX_BACKOFF_S = 30.0  # the longest wait between two polls of a failing camera


class PolledHttpSource:
    """An ``HttpSnapshotSource`` whose snapshots are also fetched on a timer into ``buffer``."""

    instant = False

    def __init__(self, snapshots: HttpSnapshotSource, buffer: FrameBuffer) -> None:
        self.camera = snapshots.camera
        self.buffer = buffer
        self._snapshots = snapshots
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:  # a source is started once (a reload builds new ones)
            return
        self._snapshots.start()
        self._thread = threading.Thread(target=self._poll, name=f"edge_vlm-clip-poll-{self.camera}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop polling and end a poll in flight; ``stop()`` waits for the poller."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()
        self._snapshots.stop()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None and self._stop_requested_at is not None:
            self._thread.join(max(0.0, self._stop_requested_at + STOP_WAIT_S - time.monotonic()))

    def grab(self) -> Frame:
        return self._snapshots.grab()

    def _poll(self) -> None:
        period = 1 / self.buffer.fps
        wait = 0.0
        failures = 0
        while not self._stop.wait(wait):
            started = time.monotonic()
            failure = self._poll_once()
            if failure is None:
                if failures:
                    logger.info("Camera %s: snapshots for clips come again", self.camera)
                failures = 0
            elif not self._stop.is_set():
                if not failures:
                    logger.warning("Camera %s: snapshot for clips failed (%s); its clips miss frames until it "
                                   "answers", self.camera, failure)
                failures += 1
            backoff = min(MAX_BACKOFF_S, period * 2 ** min(failures, 16)) if failures else period
            wait = max(0.0, started + backoff - time.monotonic())  # a slow camera is polled as it answers

    def _poll_once(self) -> str | None:
        """One snapshot into the buffer; why not, if it failed."""
        try:
            frame = self._snapshots.grab()
        except InputError as error:
            return str(error)
        except Exception as error:  # the poller must go on: a clip is a bonus
            logger.exception("Camera %s: snapshot for clips failed", self.camera)
            return f"{type(error).__name__}: {error}"
        try:
            self.buffer.offer_frame(frame)
        except Exception:  # kept or not, the camera answered
            logger.exception("Camera %s: a snapshot could not be kept for clips", self.camera)
        return None
