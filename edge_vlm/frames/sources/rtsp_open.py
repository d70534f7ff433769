"""Opening an RTSP stream with OpenCV's FFmpeg backend: the URL with the camera's credentials in it,
and FFmpeg's options (transport, probing), which OpenCV reads from the process environment."""

from __future__ import annotations

import os
import threading
from urllib.parse import quote, urlsplit, urlunsplit

import cv2

from edge_vlm.config.sources import RtspSourceConfig


class _CaptureOptions:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS is read from the process environment while a capture opens.
    Opens with the same options may overlap (a camera that hangs in its open timeout must not hold
    the others up); opens with other options wait until those are done."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._options: str | None = None
        self._holders = 0

    def open(self, options: str, url: str, params: list[int]) -> cv2.VideoCapture:
        with self._changed:
            self._changed.wait_for(lambda: self._holders == 0 or self._options == options)
            if self._holders == 0:
                self._options = options
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
            self._holders += 1
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            with self._changed:
                self._holders -= 1
                if self._holders == 0:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                    self._changed.notify_all()


_OPTIONS = _CaptureOptions()


def stream_url(config: RtspSourceConfig, password: str | None) -> str:
    """The URL to open, with the configured credentials in it (never to be logged)."""
    if config.username is None:
        return config.url
    parts = urlsplit(config.url)
    userinfo = quote(config.username, safe="") + (f":{quote(password, safe='')}" if password else "")
    host_port = parts.netloc.rsplit("@", 1)[-1]  # keeps IPv6 brackets and the port as written
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host_port}"))


def open_capture(config: RtspSourceConfig, url: str) -> cv2.VideoCapture | None:
    # The variable replaces FFmpeg's defaults: the transport must always be in it.
    options = f"rtsp_transport;{config.transport}"
    if config.fast_probe:
        options += "|analyzeduration;0|probesize;32"
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_s * 1000)]
    capture = _OPTIONS.open(options, url, params)
    if capture.isOpened():
        return capture
    capture.release()
    return None
