"""Does the NPU ever wait for the CPU? NPU busy time / wall time over 40 frames from 4 cameras.

The daemon runs here with its real worker process; the board's parts are stand-ins that take
fixed times: the imgenc stand-in sleeps 300 ms per frame (plus its process start) and the test
RKLLM runtime 24 ms per token (about 0.5 s per answer). Four cameras each keep one snapshot in
flight (a new one as soon as the previous is described), so jobs always wait; decoding and
preprocessing the next frame must overlap with the NPU work of the current one.

Reported: NPU busy / wall (target >= 0.95), the stand-ins' measured times, and the daemon's own
overhead per frame (latency minus time queued minus the worker's time), median and p95.
The naive comparison: the same 40 frames with CPU work done serially before each NPU job.

Run: .venv/bin/python -m benchmarks.pipeline
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import help_argument
from edge_vlm.config.models import AppConfig
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.service import Service
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.imgenc_standin import write_model
from tests.support.native import build_fake_rkllmrt, write_model_file
from tests.support.npu import vlm_backend

CAMERAS = 4
FRAMES = 40
TIMEOUT_S = 120.0


class Feeder:
    """Keeps one snapshot per camera in flight and records every result."""

    def __init__(self, port: int, base: str, frames: list[bytes]) -> None:
        self.results: list[dict[str, Any]] = []
        self.done = threading.Event()
        self._base = base
        self._frames = frames
        self._sent = 0
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_result
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe([(f"{base}/+/result", 1), (f"{base}/+/error", 1)])
        self._client.loop_start()
        assert subscribed.wait(10)

    def start(self) -> None:
        for camera in range(CAMERAS):
            self._send(camera)

    def _send(self, camera: int) -> None:
        with self._lock:
            if self._sent >= len(self._frames):
                return
            frame = self._frames[self._sent]
            self._sent += 1
        self._client.publish(f"{self._base}/cam{camera}/snapshot", frame, qos=1)

    def _on_result(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        result = json.loads(message.payload)
        assert "error" not in result, result
        self.results.append(result)
        if len(self.results) == len(self._frames):
            self.done.set()
        self._send(int(result["camera"].removeprefix("cam")))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def run(work: Path, broker: Mosquitto, library: Path, frames: list[bytes]) -> tuple[VlmBackend, list[dict[str, Any]]]:
    backend = vlm_backend(work, library, abi="1.3")
    write_model(Path(backend["encoder"]["model"]), delay_ms=300)
    write_model_file(Path(backend["llm"]["model"]), token_delay_ms=24)
    config = AppConfig.model_validate({
        "node_id": "bench", "prompt": "Describe.", "mqtt": {"port": broker.port}, "backend": backend,
        "cameras": [{"id": f"cam{i}"} for i in range(CAMERAS)], "logging": {"level": "WARNING"},
    })
    service = Service(config, password=None)
    service.start()
    feeder = Feeder(broker.port, config.base_topic, frames)
    try:
        assert service.connection.connected or _wait(service)
        feeder.start()
        assert feeder.done.wait(TIMEOUT_S), f"only {len(feeder.results)} of {len(frames)} results"
    finally:
        feeder.close()
        service.stop()
    assert isinstance(service.backend, VlmBackend)
    return service.backend, feeder.results


def _wait(service: Service) -> bool:
    deadline = time.monotonic() + 10
    while not service.connection.connected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main() -> None:
    help_argument(__doc__)
    frames = [images.jpeg(1920, 1080, seed=n) for n in range(FRAMES)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        library = build_fake_rkllmrt("1.3", work / "lib")
        broker = Mosquitto(work)
        broker.start()
        try:
            backend, results = run(work, broker, library, frames)
        finally:
            broker.stop()
    busy = sorted(backend.busy)[-FRAMES:]
    wall = busy[-1][1] - busy[0][0]
    npu = sum(end - start for start, end in busy)
    encoder = [r["timings_ms"]["encoder"] for r in results]
    llm = [r["details"]["worker_ms"] - r["timings_ms"]["encoder"] for r in results]
    overhead = [r["latency_ms"] - r["timings_ms"]["queued"] - r["details"]["worker_ms"] for r in results]
    cpu = [r["timings_ms"]["capture"] + r["timings_ms"]["preprocess"] for r in results]
    print(f"{len(results)} frames (1920x1080 JPEG) from {CAMERAS} cameras, one in flight per camera")
    print(f"stand-ins: encoder median {statistics.median(encoder):.0f} ms, LLM median {statistics.median(llm):.0f} ms")
    print(f"NPU busy {npu:.2f} s of {wall:.2f} s wall: {npu / wall:.3f} (target >= 0.95)")
    print(f"daemon overhead per frame (latency - queued - worker): median {statistics.median(overhead):.1f} ms, "
          f"p95 {float(np.percentile(overhead, 95)):.1f} ms")
    naive = npu / (npu + sum(cpu) / 1000)
    print(f"CPU work per frame (decode + preprocess) {statistics.median(cpu):.1f} ms, done while the NPU works; "
          f"done serially before each job instead, the NPU would be busy at most {naive:.3f} of the time")


if __name__ == "__main__":
    main()
