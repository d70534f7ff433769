"""The ``rtsp`` source: the frame a camera shows now, read with OpenCV's FFmpeg backend.

OpenCV buffers an RTSP stream and never skips: after an idle period ``read()`` returns frames
seconds old (test-infrastructure.md §3). So:
- ``persistent``: a reader thread per camera ``grab()``s every frame as it arrives (the decode
  happens there) and converts only the frames someone asks for; a trigger gets the next frame
  off the wire, at most one frame interval away;
- ``on_demand``: connect, ``grab()`` until one call has to wait for the network (the buffer is
  drained: the live edge), convert that frame, disconnect.
A stream that stalls (a hung server keeps the TCP connection open and sends nothing; OpenCV then
returns stale frames after its read timeout) is detected by timing each grab, and reconnected
with a doubling delay. A frame older than ``max_frame_age_s`` is never described as current.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import numpy as np

from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.errors import SourceError
from edge_vlm.frames import Frame
from edge_vlm.redact import redact

logger = logging.getLogger(__name__)

# OPENCV_FFMPEG_CAPTURE_OPTIONS is read from the process environment while a capture opens:
# one open at a time, each with its own options.
_OPEN_LOCK = threading.Lock()
LIVE_EDGE_GRAB_S = 0.03  # a grab that took longer waited for the network: the buffer is empty
STALL_SHARE = 0.9  # a grab this close to the read timeout means the stream stalled

StateListener = Callable[[bool, str], None]
FrameListener = Callable[[np.ndarray, float], None]  # BGR frame, wall-clock capture time


def stream_url(config: RtspSourceConfig, password: str | None) -> str:
    """The URL to open, with the configured credentials in it (never to be logged)."""
    if config.username is None:
        return config.url
    parts = urlsplit(config.url)
    userinfo = quote(config.username, safe="") + (f":{quote(password, safe='')}" if password else "")
    host = parts.hostname or ""
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_capture(config: RtspSourceConfig, url: str) -> cv2.VideoCapture | None:
    # Setting the variable replaces FFmpeg's defaults: the transport must always be in it.
    options = f"rtsp_transport;{config.transport}"
    if config.fast_probe:
        options += "|analyzeduration;0|probesize;32"
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_s * 1000)]
    with _OPEN_LOCK:
        previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
        try:
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if previous is None:
                del os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
            else:
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous
    if capture.isOpened():
        return capture
    capture.release()
    return None


def _frame(camera: str, bgr: np.ndarray, captured_at: float) -> Frame:
    height, width = bgr.shape[:2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return Frame(camera, rgb, (width, height), b"", "RAW", captured_at)


class RtspSource:
    def __init__(self, camera: str, config: RtspSourceConfig, *, password: str | None,
                 on_state: StateListener | None = None) -> None:
        self.camera = camera
        self.config = config
        self.instant = False
        self.connected = False
        self.on_frame: FrameListener | None = None  # sampled frames, for motion detection
        self.sample_interval_s = 0.0
        self._url = stream_url(config, password)
        self._shown_url = redact(self._url)
        self._on_state = on_state
        self._stop = threading.Event()
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

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.config.open_timeout_s + self.config.read_timeout_s + 1)
            self._thread = None

    def grab(self) -> Frame:
        frame = self._next_frame() if self.config.mode == "persistent" else self._grab_once()
        age = time.time() - frame.captured_at
        if age > self.config.max_frame_age_s:
            raise SourceError(f"camera {self.camera!r}: the newest frame is {age:.1f} s old, over "
                              f"max_frame_age_s = {self.config.max_frame_age_s:g}; not described as current",
                              code="stale_frame")
        return frame

    # persistent

    def _next_frame(self) -> Frame:
        if not self.connected:
            raise SourceError(f"camera {self.camera!r} is unavailable: {self._reason}")
        with self._fresh:
            seen = self._latest
            self._want.set()
            if not self._fresh.wait_for(lambda: self._latest is not seen, self.config.read_timeout_s):
                raise SourceError(f"camera {self.camera!r} is unavailable: no frame for "
                                  f"{self.config.read_timeout_s:g} s")
            assert self._latest is not None
            return self._latest

    def _read_forever(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            capture = open_capture(self.config, self._url)
            if capture is None:
                self._set_state(False, f"cannot connect to {self._shown_url}")
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_delay_s)
                continue
            delay = 1.0
            self._set_state(True, "connected")
            try:
                reason = self._read(capture)
            finally:
                capture.release()
            self._set_state(False, reason)

    def _read(self, capture: cv2.VideoCapture) -> str:
        """Grab frames until the stream ends or stalls; return why it stopped."""
        sampled = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if not capture.grab():
                return "the stream ended"
            if time.monotonic() - started >= STALL_SHARE * self.config.read_timeout_s:
                return f"no data for {self.config.read_timeout_s:g} s"
            now = time.time()
            sample = self.on_frame is not None and time.monotonic() - sampled >= self.sample_interval_s
            if not (self._want.is_set() or sample):
                continue
            ok, bgr = capture.retrieve()
            if not ok:
                return "a frame could not be decoded"
            if self._want.is_set():
                self._want.clear()
                with self._fresh:
                    self._latest = _frame(self.camera, bgr, now)
                    self._fresh.notify_all()
            if sample and self.on_frame is not None:
                sampled = time.monotonic()
                self.on_frame(bgr, now)
        return "stopped"

    def _set_state(self, connected: bool, reason: str) -> None:
        flipped = connected != self.connected
        news = flipped or reason != self._reason  # worth a log line: once per state and reason
        self.connected, self._reason = connected, reason
        if connected:
            logger.info("Camera %s: stream %s connected", self.camera, self._shown_url)
        elif news and not self._stop.is_set():
            logger.warning("Camera %s: stream unavailable (%s); reconnecting", self.camera, reason)
        if flipped and self._on_state is not None:
            self._on_state(connected, reason)

    # on demand

    def _grab_once(self) -> Frame:
        with self._on_demand_lock:
            capture = open_capture(self.config, self._url)
            if capture is None:
                raise SourceError(f"camera {self.camera!r} is unavailable: cannot connect to {self._shown_url}")
            try:
                return self._live_edge(capture)
            finally:
                capture.release()

    def _live_edge(self, capture: cv2.VideoCapture) -> Frame:
        deadline = time.monotonic() + self.config.read_timeout_s
        while True:
            started = time.monotonic()
            if not capture.grab():
                raise SourceError(f"camera {self.camera!r} is unavailable: the stream ended")
            waited = time.monotonic() - started
            if waited >= STALL_SHARE * self.config.read_timeout_s:
                raise SourceError(f"camera {self.camera!r} is unavailable: no data for "
                                  f"{self.config.read_timeout_s:g} s")
            if waited > LIVE_EDGE_GRAB_S or time.monotonic() > deadline:
                break
        ok, bgr = capture.retrieve()
        if not ok:
            raise SourceError(f"camera {self.camera!r}: a frame could not be decoded")
        return _frame(self.camera, bgr, time.time())
