"""The venv side of the RTSP test camera (``rtsp_server.py``): start/stop/hang it, decode its frames' blocks.

Works without ``gi``: the server runs as a subprocess of Debian's ``/usr/bin/python3``, which has it.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.support.rtsp_server import BLOCK, COLUMNS, FRAME_BITS, ROWS, TS_BITS, TS_MOD, payload_bits

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# OpenCV's FFmpeg options: setting the variable replaces OpenCV's defaults, so TCP must be asked for again.
# analyzeduration 0 + probesize 32: open in ~0.1 s instead of ~1.9 s (gst puts SPS/PPS in the SDP).
CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;0|probesize;32"
# a block reads as 1 when the mean of its inner pixels is above this (black is ~0, white ~255 after decoding)
_THRESHOLD = 128.0
_MARGIN = 4  # pixels left out at each block edge: H.264 blurs the edges


@functools.cache
def rtsp_unavailable() -> str | None:
    """Why the RTSP test server cannot run here (a pytest skip reason), or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    result = subprocess.run(
        [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if result.returncode == 0:
        return None
    detail = (result.stdout + result.stderr).strip().splitlines()
    return (f"RTSP test server unavailable ({detail[-1] if detail else f'exit {result.returncode}'}): needs "
            "python3-gi, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-{base,good,ugly} + gstreamer1.0-x")


def decode_blocks(frame: npt.NDArray[Any]) -> tuple[int, int] | None:
    """(timestamp_ms mod 2^40, frame_number) from a frame's top-left blocks, or None if they don't check out.

    ``frame`` is HxW (grey) or HxWx3 (BGR or RGB: black and white read the same), at the server's size.
    """
    if frame.ndim == 3:
        frame = frame.mean(axis=2)
    if frame.ndim != 2 or frame.shape[0] < ROWS * BLOCK or frame.shape[1] < COLUMNS * BLOCK:
        return None
    area = frame[:ROWS * BLOCK, :COLUMNS * BLOCK].astype(np.float32)
    cells = area.reshape(ROWS, BLOCK, COLUMNS, BLOCK)[:, _MARGIN:BLOCK - _MARGIN, :, _MARGIN:BLOCK - _MARGIN]
    bits = [int(b) for b in (cells.mean(axis=(1, 3)) > _THRESHOLD).ravel()]
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    total = ROWS * COLUMNS
    ts_ms = value >> (total - TS_BITS)
    frame_no = (value >> (total - TS_BITS - FRAME_BITS)) & ((1 << FRAME_BITS) - 1)
    return (ts_ms, frame_no) if payload_bits(ts_ms, frame_no) == bits else None


def frame_age_ms(frame: npt.NDArray[Any]) -> float | None:
    """Now minus the frame's capture time (same wall clock as the server), or None if its blocks don't decode."""
    decoded = decode_blocks(frame)
    if decoded is None:
        return None
    now_ms = time.time_ns() / 1e6
    age = (now_ms - decoded[0]) % TS_MOD  # the timestamp wraps at 2^40 ms
    return age - TS_MOD if age > TS_MOD / 2 else age  # a frame "from the future" (clock skew): negative


def open_capture(url: str, open_timeout_ms: int = 3000, read_timeout_ms: int = 2000) -> Any:
    """A ``cv2.VideoCapture`` on ``url`` with the FFmpeg backend, fast-open options and finite timeouts."""
    import cv2

    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = CAPTURE_OPTIONS
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms,
    ])


class RtspServer:
    """``rtsp_server.py`` as a subprocess of /usr/bin/python3; ``start()`` returns once it serves.

    ``log`` gets the server's stderr. The first ``start()`` picks the port (unless ``port`` is given);
    ``restart()`` reuses it.
    """

    def __init__(
        self, log: Path, *, port: int = 0, path: str = "/test", fps: int = 15, size: tuple[int, int] = (640, 360),
        source: str = "blocks", pattern: str = "still", moving_after: float | None = None,
    ) -> None:
        self.log = log
        self.port = port
        self.path = path
        self.fps = fps
        self.size = size
        self.source = source
        self.pattern = pattern
        self.moving_after = moving_after
        self.start_seconds = 0.0  # how long the last start() took
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not started yet")
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def command(self) -> list[str]:
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--path", self.path,
               "--fps", str(self.fps), "--size", f"{self.size[0]}x{self.size[1]}",
               "--source", self.source, "--pattern", self.pattern]
        if self.moving_after is not None:
            cmd += ["--moving-after", str(self.moving_after)]
        return cmd

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("already running")
        began = time.monotonic()
        with self.log.open("ab") as log:
            process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log)
        self._process = process
        assert process.stdout is not None
        line = b""
        deadline = began + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    chunk = os.read(process.stdout.fileno(), 4096)
                    if not chunk:
                        break  # EOF: it exited
                    line += chunk
        process.stdout.close()  # it prints nothing after READY
        fields = dict(f.split("=", 1) for f in line.decode(errors="replace").split()[1:] if "=" in f)
        if not line.startswith(b"READY ") or "port" not in fields:
            code = process.poll()
            self.kill()
            what = f"exited with {code}" if code is not None else f"not ready within {START_TIMEOUT_S} s"
            raise RuntimeError(f"RTSP server on port {self.port} {what} (stdout {line!r}); see {self.log}")
        self.port = int(fields["port"])
        self.start_seconds = time.monotonic() - began

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("the server is not running")
        self._process.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (and SIGCONT, in case it is paused); SIGKILL if it has not exited after ``timeout``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the TCP connections drop at once."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: a hung camera, whose TCP connections stay open but carry nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def start_motion(self) -> None:
        """From the next frame on, a bright square crosses the scene (SIGUSR1)."""
        self._signal(signal.SIGUSR1)

    def stop_motion(self) -> None:
        """Back to the still scene (SIGUSR2)."""
        self._signal(signal.SIGUSR2)

    def restart(self) -> None:
        """A new server process on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
