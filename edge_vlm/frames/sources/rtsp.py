"""The ``rtsp`` source: the frame a camera shows now, read with OpenCV's FFmpeg backend.

OpenCV buffers an RTSP stream and never skips: after an idle period ``read()`` returns frames
seconds old (measured against GStreamer's RTSP server in tests/test_rtsp_source.py). So:
- ``persistent``: a reader thread per camera ``grab()``s every frame as it arrives (the decode
  happens there) and converts only the frames someone asks for; a trigger gets the next frame
  off the wire, at most one frame interval away;
- ``on_demand``: connect, ``grab()`` until one call has to wait for the network (the buffer is
  drained: the live edge), convert that frame, disconnect.
Every frame's capture time is its grab time minus how far the reader lags behind the stream's own
clock (its timestamps against the wall clock since connecting), so a reader that falls behind
hands out frames that look as old as they are; one older than ``max_frame_age_s`` is refused.
A stream that stalls (a hung server keeps the TCP connection open and sends nothing; OpenCV then
returns stale frames after its read timeout) is detected by timing each grab, and reconnected
with a doubling delay, reset only once frames have flowed for a while.

Bounds: OpenCV's FFmpeg backend ends an open after ``open_timeout_s`` and each read after
``read_timeout_s`` in total (an interrupt callback on the clock, so a server that trickles bytes
is cut off too). A persistent source's ``grab()`` waits ``read_timeout_s`` at most; an on-demand
one ``open_timeout_s`` plus ``2 * read_timeout_s`` at most (reads until the live edge, the last one
started before ``read_timeout_s`` ran out). ``stop()`` wakes a ``grab()`` waiting for a frame
(``cancelled``) and waits ``STOP_WAIT_S`` at most for the reader: one OpenCV call cannot be
interrupted, and a daemon thread stuck in one must not hold up the daemon's stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.core.errors import ErrorCode, SourceError
from edge_vlm.core.redact import redact_url
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer
from edge_vlm.frames.sources.rtsp_open import open_capture, stream_url

logger = logging.getLogger(__name__)

STALL_SHARE = 0.9  # a grab this close to the read timeout means the stream stalled
HEALTHY_S = 10.0  # frames flowing this long after a connect reset the reconnect delay
DEFAULT_FPS = 15.0
# stop() waits this long at most, from the first request_stop(), for the reader thread to let go of
# its stream; sources stopped together (request_stop() on all, then stop() on each) share the wait.
STOP_WAIT_S = 2.0

StateListener = Callable[[bool, str], None]
FrameListener = Callable[[np.ndarray], None]  # a sampled BGR frame; must return at once


def _frame(camera: str, bgr: np.ndarray, captured_at: float) -> Frame:
    height, width = bgr.shape[:2]
    return Frame(camera, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), b"", "RAW", captured_at)


class _Lag:
    """How far behind the stream's own clock the reader is, from its timestamps."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture
        self._start: tuple[float, float] | None = None  # (wall, stream ms) at the first frame

    def seconds(self, now: float) -> float:
        position = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        if position <= 0:  # no timestamps yet (or none at all): assume the live edge
            return 0.0
        if self._start is None:
            self._start = (now, position)
            return 0.0
        return max(0.0, (now - self._start[0]) - (position - self._start[1]) / 1000)


class RtspSource:
    def __init__(self, camera: str, config: RtspSourceConfig, *, password: str | None,
                 on_state: StateListener | None = None, buffer: FrameBuffer | None = None) -> None:
        """``buffer``: where the reader keeps the stream's last seconds (the camera's clip)."""
        self.camera = camera
        self.config = config
        self.buffer = buffer
        self.instant = False
        self.connected = False
        self.on_frame: FrameListener | None = None  # sampled frames, for motion detection
        self.sample_interval_s = 0.0
        self._url = stream_url(config, password)
        self._shown_url = redact_url(self._url)
        self._on_state = on_state
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._thread: threading.Thread | None = None
        self._want = threading.Event()
        self._fresh = threading.Condition()
        self._latest: Frame | None = None
        self._reason = "not connected yet"
        self._on_demand_lock = threading.Lock()

    def start(self) -> None:
        if self.config.mode == "persistent" and self._thread is None:
            self._thread = threading.Thread(target=self._read_forever, name=f"edge_vlm-rtsp-{self.camera}",
                                            daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask the reader to stop and end grabs in flight; ``stop()`` waits for the reader (stop many
        sources at once this way: their waits run together)."""
        with self._fresh:
            if self._stop_requested_at is None:
                self._stop_requested_at = time.monotonic()
            self._stop.set()
            self._fresh.notify_all()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None and self._stop_requested_at is not None:
            self._thread.join(max(0.0, self._stop_requested_at + STOP_WAIT_S - time.monotonic()))
            if self._thread.is_alive():  # a daemon thread: it ends by itself, within OpenCV's timeouts
                logger.warning("Camera %s: the stream reader is still in an OpenCV call after %g s; not "
                               "waiting for it (open_timeout_s and read_timeout_s end it)", self.camera, STOP_WAIT_S)

    def grab(self) -> Frame:
        frame = self._next_frame() if self.config.mode == "persistent" else self._grab_once()
        age = time.time() - frame.captured_at
        if age > self.config.max_frame_age_s:
            raise SourceError(f"camera {self.camera!r}: the newest frame is {age:.1f} s old, over "
                              f"max_frame_age_s = {self.config.max_frame_age_s:g}; not described as current",
                              code=ErrorCode.STALE_FRAME)
        return frame

    # persistent

    def _next_frame(self) -> Frame:
        if not self.connected:
            raise SourceError(f"camera {self.camera!r} is unavailable: {self._reason}")
        with self._fresh:
            seen = self._latest
            self._want.set()
            if not self._fresh.wait_for(lambda: self._latest is not seen or self._stop.is_set(),
                                        self.config.read_timeout_s):
                raise SourceError(f"camera {self.camera!r} is unavailable: no frame for "
                                  f"{self.config.read_timeout_s:g} s")
            if self._latest is seen:
                raise self._cancelled()
            assert self._latest is not None
            return self._latest

    def _cancelled(self) -> SourceError:
        return SourceError(f"camera {self.camera!r}: the source was stopped (the daemon is stopping, or "
                           "reloading its configuration)", code=ErrorCode.CANCELLED)

    def _read_forever(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            capture = open_capture(self.config, self._url)
            if capture is None:
                reason = f"cannot connect to {self._shown_url}"
            else:
                self._set_state(True, "connected")
                connected_at = time.monotonic()
                try:
                    reason = self._read(capture)
                finally:
                    capture.release()
                if time.monotonic() - connected_at >= HEALTHY_S:
                    delay = 1.0
            self._set_state(False, reason)
            self._stop.wait(delay)  # always: a stream that fails at once must not spin
            delay = min(delay * 2, self.config.reconnect_max_delay_s)

    def _read(self, capture: cv2.VideoCapture) -> str:
        """Grab frames until the stream ends or stalls; return why it stopped."""
        lag = _Lag(capture)
        sampled = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if not capture.grab():
                return "the stream ended"
            if time.monotonic() - started >= STALL_SHARE * self.config.read_timeout_s:
                return f"no data for {self.config.read_timeout_s:g} s"
            captured_at = time.time() - lag.seconds(time.time())
            sample = self.on_frame is not None and time.monotonic() - sampled >= self.sample_interval_s
            keep = self.buffer is not None and self.buffer.due()
            if not (self._want.is_set() or sample or keep):
                continue
            ok, bgr = capture.retrieve()
            if not ok:
                return "a frame could not be decoded"
            if keep and self.buffer is not None:
                try:
                    self.buffer.offer(bgr, captured_at)
                except Exception:  # the reader must go on: a clip is a bonus, the live frame is not
                    logger.exception("Camera %s: a frame could not be kept for clips", self.camera)
            if self._want.is_set():
                self._want.clear()
                with self._fresh:
                    self._latest = _frame(self.camera, bgr, captured_at)
                    self._fresh.notify_all()
            if sample and self.on_frame is not None:
                sampled = time.monotonic()
                self.on_frame(bgr)
        return "stopped"

    def _set_state(self, connected: bool, reason: str) -> None:
        flipped = connected != self.connected
        news = flipped or reason != self._reason  # worth a log line: once per state and reason
        self.connected, self._reason = connected, reason
        if connected and flipped:
            logger.info("Camera %s: stream %s connected", self.camera, self._shown_url)
        elif news and not connected and not self._stop.is_set():
            logger.warning("Camera %s: stream unavailable (%s); reconnecting", self.camera, reason)
        if flipped and self._on_state is not None:
            self._on_state(connected, reason)

    # on demand

    def _grab_once(self) -> Frame:
        with self._on_demand_lock:
            if self._stop.is_set():
                raise self._cancelled()
            capture = open_capture(self.config, self._url)
            if capture is None:
                raise SourceError(f"camera {self.camera!r} is unavailable: cannot connect to {self._shown_url}")
            try:
                return self._live_edge(capture)
            finally:
                capture.release()

    def _live_edge(self, capture: cv2.VideoCapture) -> Frame:
        """Grab until a grab had to wait for the network (half a frame interval): the live edge."""
        fps = capture.get(cv2.CAP_PROP_FPS)
        waiting = 0.5 / (fps if 1 <= fps <= 240 else DEFAULT_FPS)
        deadline = time.monotonic() + self.config.read_timeout_s
        while True:
            if self._stop.is_set():
                raise self._cancelled()
            started = time.monotonic()
            if not capture.grab():
                raise SourceError(f"camera {self.camera!r} is unavailable: the stream ended")
            waited = time.monotonic() - started
            if waited >= STALL_SHARE * self.config.read_timeout_s:
                raise SourceError(f"camera {self.camera!r} is unavailable: no data for "
                                  f"{self.config.read_timeout_s:g} s")
            if waited > waiting:
                break
            if time.monotonic() > deadline:
                raise SourceError(f"camera {self.camera!r}: could not catch up with the stream within "
                                  f"{self.config.read_timeout_s:g} s", code=ErrorCode.STALE_FRAME)
        ok, bgr = capture.retrieve()
        if not ok:
            raise SourceError(f"camera {self.camera!r}: a frame could not be decoded")
        return _frame(self.camera, bgr, time.time())
