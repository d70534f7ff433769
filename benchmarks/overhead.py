"""The daemon's own overhead per event, and its memory.

A 1920x1080 JPEG is published to a camera's snapshot topic; the time until its result arrives,
minus the backend's own compute (the stages it reports), is what the daemon costs per event:
MQTT in and out, decoding, scheduling, building and publishing four messages. Measured against
the real `edge-vlm run` process and a private mosquitto, events one after the other.

Compared in the same run with the naive ways:
- transport floor: the same JPEG bounced through the broker by a client that only echoes it
  (what any MQTT daemon pays before doing anything);
- decoding: full-size decode and resize (the naive way) against the reduced-scale JPEG decode.

Run: .venv/bin/python -m benchmarks.overhead [EVENTS]   (default 200)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import count_argument
from edge_vlm.frames import decode_image
from tests.support import images
from tests.support.broker import Mosquitto

BACKEND_STAGES_EXCLUDED = {"capture", "preprocess", "queued"}  # the daemon's stages; the rest is the backend's
TIMEOUT_S = 30.0


class Client:
    """Publishes and records arrival times of messages on one topic."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self._arrived = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self._client.subscribe(topic, qos=1)
        assert subscribed.wait(TIMEOUT_S)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._arrived:
            self.arrivals.append((time.perf_counter(), bytes(message.payload)))
            self._arrived.notify_all()

    def send_and_wait(self, topic: str, payload: bytes) -> tuple[float, float, bytes]:
        count = len(self.arrivals)
        start = time.perf_counter()
        self._client.publish(topic, payload, qos=1)
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.arrivals) > count, TIMEOUT_S), "no answer"
            arrived, answer = self.arrivals[count]
        return start, arrived, answer

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_online(status: Client) -> None:
    """Until the daemon's status topic says online."""
    deadline = time.monotonic() + TIMEOUT_S
    while not any(p == b"online" for _, p in status.arrivals):
        assert time.monotonic() < deadline, "the daemon did not come online"
        time.sleep(0.05)


def camera_jpeg() -> bytes:
    """A 1080p frame with a camera's texture (sensor noise), about the size a camera sends."""
    rng = np.random.default_rng(1)
    noisy = images.scene(1920, 1080).astype(np.int16) + rng.normal(0, 6, (1080, 1920, 3)).astype(np.int16)
    return images.encode(np.clip(noisy, 0, 255).astype(np.uint8), "JPEG", quality=85)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def daemon_overhead(broker: Mosquitto, work: Path, jpeg: bytes, events: int) -> tuple[list[float], int]:
    config = {
        "node_id": "bench", "mqtt": {"port": broker.port},
        "cameras": [{"id": "bench_cam"}], "logging": {"level": "WARNING"},
    }
    (work / "edge_vlm.yaml").write_text(yaml.safe_dump(config))
    daemon = subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(work / "edge_vlm.yaml")])
    status = Client(broker.port, "edge_vlm/bench/status")
    client = Client(broker.port, "edge_vlm/bench_cam/result")
    wait_online(status)
    overheads = []
    for n in range(events + 5):
        start, arrived, answer = client.send_and_wait("edge_vlm/bench_cam/snapshot", jpeg)
        result = json.loads(answer)
        compute = sum(ms for stage, ms in result["timings_ms"].items() if stage not in BACKEND_STAGES_EXCLUDED)
        if n >= 5:  # warm-up
            overheads.append((arrived - start) * 1000 - compute)
    client.close()
    status.close()
    rss, peak = rss_mb(daemon.pid)
    daemon.terminate()
    daemon.wait(TIMEOUT_S)
    print(f"daemon RSS after {events} events: {rss:.0f} MB (peak {peak:.0f} MB)")
    return overheads, daemon.returncode


def transport_floor(broker: Mosquitto, jpeg: bytes, events: int) -> list[float]:
    echo = paho.Client(CallbackAPIVersion.VERSION2)
    echo.on_message = lambda c, u, m: c.publish("bench/echo/out", m.payload, qos=1)
    echo.connect("127.0.0.1", broker.port)
    echo.subscribe("bench/echo/in", qos=1)
    echo.loop_start()
    client = Client(broker.port, "bench/echo/out")
    times = []
    for n in range(events + 5):
        start, arrived, _ = client.send_and_wait("bench/echo/in", jpeg)
        if n >= 5:
            times.append((arrived - start) * 1000)
    client.close()
    echo.disconnect()
    echo.loop_stop()
    return times


def decode_times(jpeg: bytes, runs: int = 50) -> tuple[float, float]:
    def ours() -> None:
        decode_image(jpeg, camera="c", captured_at=0, max_bytes=10**8, max_pixels=10**8, min_long_side=640)

    def naive() -> None:
        full = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        cv2.resize(full, (640, 360), interpolation=cv2.INTER_AREA)

    results = []
    for fn in (ours, naive):
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        results.append(statistics.median(samples))
    return results[0], results[1]


def main() -> None:
    events = count_argument(__doc__, 200)
    jpeg = camera_jpeg()
    print(f"{events} events, 1920x1080 JPEG of {len(jpeg) / 1000:.0f} kB, opencv backend\n")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            overheads, code = daemon_overhead(broker, Path(tmp), jpeg, events)
            floor = transport_floor(broker, jpeg, min(events, 100))
        finally:
            broker.stop()
    ours, naive = decode_times(jpeg)
    median, p95 = statistics.median(overheads), percentile(overheads, 95)
    floor_median = statistics.median(floor)
    print(f"daemon overhead per event: median {median:.1f} ms, p95 {p95:.1f} ms, max {max(overheads):.1f} ms "
          "(targets: median <= 15, p95 <= 40)")
    print(f"transport floor (echo through the broker): median {floor_median:.1f} ms, "
          f"p95 {percentile(floor, 95):.1f} ms; overhead / floor = {median / floor_median:.1f}")
    print(f"decode 1080p for a 640 px backend: reduced-scale {ours:.1f} ms vs full decode + resize "
          f"{naive:.1f} ms: {naive / ours:.1f}x faster")
    print(f"daemon exit status after SIGTERM: {code}")


if __name__ == "__main__":
    main()
