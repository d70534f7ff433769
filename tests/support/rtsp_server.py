"""An RTSP test camera: GStreamer's gst-rtsp-server fed by appsrc, run as a subprocess of Debian's python3.

Run it with the interpreter that has ``gi`` (``/usr/bin/python3`` + python3-gi + gir1.2-gst-rtsp-server-1.0)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 0 --path /test --fps 15 --size 640x360 \
        [--source blocks|testsrc] [--pattern still|moving] [--moving-after SECONDS]

Once it serves, it prints one line on stdout, ``READY port=N url=rtsp://127.0.0.1:N/test``, and nothing more
there (logs go to stderr). ``--check`` prints what is missing and exits 1, or exits 0.

Signals: SIGTERM/SIGINT stop it; SIGUSR1 switches the scene to ``moving``, SIGUSR2 back to ``still``.

``--source blocks`` (default): every frame's top ``ROWS`` rows of ``BLOCK``x``BLOCK`` pixel blocks (``COLUMNS``
blocks per row, from the top-left corner) carry one bit each, black = 0 and white = 1, most significant bit
first: the wall-clock capture time in ms mod 2^40 (40 bits), the frame counter mod 2^32 (32 bits) and a
24-bit checksum (CRC-32 of those 9 bytes, low 24 bits). ``payload_bits`` is the single definition of that
layout; ``tests/support/rtsp.py`` decodes frames by re-encoding what it read and comparing. The rest of the
frame is a static textured background, with a bright square crossing it while the pattern is ``moving``.

``--source testsrc``: videotestsrc (``smpte`` when still, ``ball`` when moving) with a human-readable timeoverlay.

This module imports ``gi`` only inside ``main`` so that the project's venv (which has no ``gi``) can import
the layout from it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
import zlib
from typing import Any

BLOCK = 16
COLUMNS = 32
ROWS = 3
TS_BITS = 40
FRAME_BITS = 32
CHECK_BITS = 24
TS_MOD = 1 << TS_BITS
FRAME_MOD = 1 << FRAME_BITS
assert TS_BITS + FRAME_BITS + CHECK_BITS == COLUMNS * ROWS

BLACK = 16  # video range: decoders map these to 0 and 255
WHITE = 235
NEEDED_ELEMENTS = ("appsrc", "videoconvert", "x264enc", "rtph264pay", "videotestsrc", "timeoverlay")


def checksum(ts_ms: int, frame_no: int) -> int:
    data = (ts_ms % TS_MOD).to_bytes(5, "big") + (frame_no % FRAME_MOD).to_bytes(4, "big")
    return zlib.crc32(data) & ((1 << CHECK_BITS) - 1)


def payload_bits(ts_ms: int, frame_no: int) -> list[int]:
    """The ``COLUMNS * ROWS`` bits, row-major from the top-left block, that encode (ts_ms, frame_no)."""
    value = (ts_ms % TS_MOD) << (FRAME_BITS + CHECK_BITS)
    value |= (frame_no % FRAME_MOD) << CHECK_BITS
    value |= checksum(ts_ms, frame_no)
    total = COLUMNS * ROWS
    return [(value >> (total - 1 - i)) & 1 for i in range(total)]


class Scene:
    """I420 frames built with bytes operations only (Debian's python3 has no numpy)."""

    def __init__(self, width: int, height: int) -> None:
        if width < COLUMNS * BLOCK or height < 4 * ROWS * BLOCK or width % 2 or height % 2:
            raise ValueError(f"size {width}x{height} is too small or odd")
        self.width, self.height = width, height
        rows = []
        for band in range(4):  # four row variants alternate every 32 lines: a checkered, shaded texture
            rows.append(bytes(
                60 + (x * 60) // width + (30 if (x // 32 + band) % 2 else 0) + 10 * band + (8 if x % 64 < 4 else 0)
                for x in range(width)
            ))
        self.background = b"".join(rows[(y // 32) % 4] for y in range(height))
        self.chroma = bytes([128]) * (width * height // 2)
        self.square = max(2 * BLOCK, height // 6)
        self.white_run = bytes([WHITE]) * BLOCK
        self.black_run = bytes([BLACK]) * BLOCK

    def frame(self, ts_ms: int, frame_no: int, square_x: int | None) -> bytes:
        w = self.width
        y_plane = bytearray(self.background)
        bits = payload_bits(ts_ms, frame_no)
        for r in range(ROWS):
            line = b"".join(self.white_run if b else self.black_run for b in bits[r * COLUMNS:(r + 1) * COLUMNS])
            for y in range(r * BLOCK, (r + 1) * BLOCK):
                y_plane[y * w:y * w + len(line)] = line
        if square_x is not None:
            side = self.square
            top = (self.height + ROWS * BLOCK - side) // 2
            x0 = max(0, min(w - side, square_x))
            run = bytes([WHITE]) * side
            for y in range(top, top + side):
                y_plane[y * w + x0:y * w + x0 + side] = run
        return bytes(y_plane) + self.chroma


class Camera:
    """Pushes frames into whichever appsrc the shared media currently has, at ``fps``, from a thread."""

    def __init__(self, gst: Any, scene: Scene, fps: int, moving: bool) -> None:
        self.gst, self.scene, self.fps = gst, scene, fps
        self.moving = moving
        self.frame_no = 0
        self.appsrc: Any = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="camera", daemon=True)

    def attach(self, appsrc: Any) -> None:
        with self.lock:
            self.appsrc = appsrc

    def detach(self, appsrc: Any) -> None:
        with self.lock:
            if self.appsrc is appsrc:
                self.appsrc = None

    def run(self) -> None:
        period = 1.0 / self.fps
        speed = self.scene.width / 4.0  # px per second: crosses the frame in 4 s
        x = 0.0
        next_t = time.monotonic()
        while not self.stopped.is_set():
            now = time.monotonic()
            if now < next_t:
                self.stopped.wait(next_t - now)
                continue
            # after a SIGSTOP/SIGCONT, carry on from now instead of bursting the missed frames
            next_t = next_t + period if now - next_t < period else now + period
            if self.moving:
                x = (x + speed * period) % (self.scene.width - self.scene.square)
            data = self.scene.frame(time.time_ns() // 1_000_000, self.frame_no, int(x) if self.moving else None)
            self.frame_no += 1
            with self.lock:
                appsrc = self.appsrc
            if appsrc is not None:
                appsrc.emit("push-buffer", self.gst.Buffer.new_wrapped(data))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--path", default="/test")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--source", choices=("blocks", "testsrc"), default="blocks")
    parser.add_argument("--pattern", choices=("still", "moving"), default="still")
    parser.add_argument("--moving-after", type=float, default=None, metavar="SECONDS",
                        help="switch the pattern to moving this long after READY")
    parser.add_argument("--check", action="store_true", help="exit 0 if gi and the GStreamer elements are there")
    return parser.parse_args(argv)


def load_gi() -> tuple[Any, ...]:
    gi = importlib.import_module("gi")
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    return tuple(importlib.import_module(f"gi.repository.{name}") for name in ("GLib", "Gst", "GstRtspServer"))


def check() -> int:
    try:
        _, gst, _ = load_gi()
    except (ImportError, ValueError) as exc:
        print(f"missing: {exc}")
        return 1
    gst.init(None)
    missing = [name for name in NEEDED_ELEMENTS if gst.ElementFactory.find(name) is None]
    if missing:
        print("missing GStreamer elements: " + " ".join(missing))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        return check()
    glib, gst, rtsp = load_gi()
    gst.init(None)
    width, height = (int(v) for v in args.size.lower().split("x"))
    fps = args.fps
    encode = (f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
              f"! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1")
    camera: Camera | None = None
    if args.source == "blocks":
        camera = Camera(gst, Scene(width, height), fps, args.pattern == "moving")
        launch = (f"( appsrc name=src is-live=true do-timestamp=true format=time block=false "
                  f"max-buffers=2 leaky-type=downstream "
                  f"caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
                  f"! queue max-size-buffers=2 leaky=downstream ! {encode} )")
    else:
        launch = (f"( videotestsrc name=src is-live=true pattern={'ball' if args.pattern == 'moving' else 'smpte'} "
                  f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
                  f"! timeoverlay font-desc=\"Sans 24\" ! videoconvert ! {encode} )")
    media_sources: list[Any] = []

    def on_media_configure(_factory: Any, media: Any) -> None:
        src = media.get_element().get_by_name_recurse_up("src")
        media_sources.append(src)
        if camera is not None:
            camera.attach(src)

        def on_unprepared(_media: Any) -> None:
            if camera is not None:
                camera.detach(src)
            if src in media_sources:
                media_sources.remove(src)

        media.connect("unprepared", on_unprepared)

    def set_pattern(moving: bool) -> None:
        print(f"pattern -> {'moving' if moving else 'still'}", file=sys.stderr, flush=True)
        if camera is not None:
            camera.moving = moving
        for src in list(media_sources):
            if src.get_factory().get_name() == "videotestsrc":
                src.set_property("pattern", "ball" if moving else "smpte")

    factory = rtsp.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    factory.connect("media-configure", on_media_configure)
    server = rtsp.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot serve on {args.address}:{args.port}", file=sys.stderr)
        return 1
    # drop idle sessions of clients that vanished without TEARDOWN
    glib.timeout_add_seconds(2, lambda: server.get_session_pool().cleanup() >= 0)
    loop = glib.MainLoop()

    def on_stop() -> bool:
        loop.quit()
        return False

    def on_motion(moving: bool) -> bool:
        set_pattern(moving)
        return True

    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGTERM, on_stop)
    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGINT, on_stop)
    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGUSR1, lambda: on_motion(True))
    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGUSR2, lambda: on_motion(False))
    if args.moving_after is not None:
        glib.timeout_add(int(args.moving_after * 1000), lambda: on_motion(True) and False)
    if camera is not None:
        camera.thread.start()
    port = server.get_bound_port()
    print(f"READY port={port} url=rtsp://{args.address}:{port}{args.path}", flush=True)
    try:
        loop.run()
    finally:
        if camera is not None:
            camera.stopped.set()
            camera.thread.join(2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
