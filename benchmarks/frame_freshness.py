"""How old is the frame a trigger gets? edge_vlm's persistent RTSP source against a plain capture.

The test RTSP server stamps every frame with its capture time. For 30 triggers spaced 1-5 s
apart (random, seeded), the frame edge_vlm's persistent source hands out and the frame a plain
``cv2.VideoCapture.read()`` on an open capture returns are decoded for their age, at the same
instant. Then the CPU each way of reading costs per camera, at 720p and 1080p, 15 fps: persistent
without and with motion detection, and on_demand (per grab).

Run: .venv/bin/python -m benchmarks.frame_freshness [TRIGGERS]   (default 30; needs the GStreamer
packages that scripts/setup --test installs)
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import count_argument
from edge_vlm.config.sources import MotionConfig, RtspSourceConfig
from edge_vlm.frames.sources.rtsp import RtspSource
from edge_vlm.ingest.motion import MotionDetector
from tests.support.rtsp import RtspServer, frame_age_ms, open_capture

FPS = 15
CPU_WINDOW_S = 10.0


def wait_connected(source: RtspSource, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not source.connected:
        assert time.monotonic() < deadline, "the stream did not connect"
        time.sleep(0.05)


def freshness(url: str, triggers: int) -> tuple[list[float], list[float]]:
    source = RtspSource("bench", RtspSourceConfig(type="rtsp", url=url), password=None)
    source.start()
    plain = open_capture(url)
    wait_connected(source)
    ours, theirs = [], []
    spacing = random.Random(1)
    try:
        for _ in range(triggers):
            time.sleep(spacing.uniform(1, 5))  # the idle spell between two events is what is measured
            frame = source.grab()
            ok, naive = plain.read()
            assert ok
            now = time.time() * 1000
            ours.append(float(frame_age_ms(frame.pixels) or 0) - (now - frame.captured_at * 1000))
            theirs.append(float(frame_age_ms(naive) or 0))
    finally:
        plain.release()
        source.stop()
    return ours, theirs


def cpu_share(url: str, *, motion: bool) -> float:
    source = RtspSource("bench", RtspSourceConfig(type="rtsp", url=url), password=None)
    detector = MotionDetector(MotionConfig(enabled=True), lambda: None)
    if motion:
        detector.start("bench")
        source.on_frame = detector.offer
        source.sample_interval_s = 1 / 5
    source.start()
    wait_connected(source)
    time.sleep(1)
    started, cpu = time.monotonic(), time.process_time()
    time.sleep(CPU_WINDOW_S)
    share = (time.process_time() - cpu) / (time.monotonic() - started)
    source.stop()
    if motion:
        detector.stop()
    return share


def on_demand_cpu(url: str, grabs: int = 5) -> float:
    source = RtspSource("bench", RtspSourceConfig(type="rtsp", url=url, mode="on_demand"), password=None)
    cpu = time.process_time()
    for _ in range(grabs):
        source.grab()
    return (time.process_time() - cpu) / grabs


def main() -> None:
    triggers = count_argument(__doc__, 30)
    with tempfile.TemporaryDirectory() as tmp:
        server = RtspServer(Path(tmp) / "rtsp.log", fps=FPS, size=(1280, 720))
        server.start()
        try:
            ours, theirs = freshness(server.url, triggers)
        finally:
            server.stop()
        print(f"{triggers} triggers 1-5 s apart, 1280x720 at {FPS} fps; age of the frame at the moment it was taken:")
        print(f"  edge_vlm persistent source: median {statistics.median(ours):.0f} ms, max {max(ours):.0f} ms")
        print(f"  plain VideoCapture.read():  median {statistics.median(theirs):.0f} ms, max {max(theirs):.0f} ms")
        print(f"  plain / edge_vlm (median): {statistics.median(theirs) / statistics.median(ours):.1f}x")
        print(f"CPU of one core per camera ({FPS} fps, measured over {CPU_WINDOW_S:.0f} s):")
        for size in ((1280, 720), (1920, 1080)):
            server = RtspServer(Path(tmp) / f"rtsp{size[1]}.log", fps=FPS, size=size)
            server.start()
            try:
                plain, motion = cpu_share(server.url, motion=False), cpu_share(server.url, motion=True)
                grab = on_demand_cpu(server.url)
            finally:
                server.stop()
            print(f"  {size[1]}p: persistent {plain:.1%}, persistent + motion {motion:.1%} "
                  f"(motion itself {motion - plain:+.1%}); on_demand {grab * 1000:.0f} ms CPU per grab")


if __name__ == "__main__":
    main()
