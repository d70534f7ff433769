"""What the HTTP API adds to a request: the same 1920x1080 JPEG and question asked over HTTP (Ollama's
/api/chat, streamed, until its first chunk) and over MQTT (<base>/request, until its reply), of the
real `edge-vlm run` process with the opencv backend and a private mosquitto, one request after the
other, alternating. The model's own time (its stages in the answer: Ollama's eval_duration, the
result's timings) is subtracted from each, so what is left is the daemon's per path: for HTTP the
connection, reading and parsing the JSON body, the handoff to the queue and back, and the NDJSON
answer; for MQTT the broker both ways and the JSON request. What the HTTP layer adds is each HTTP
request's time less that of the MQTT request asked right after it, measured in the same run.

Run: .venv/bin/python -m benchmarks.api_overhead [REQUESTS]   (default 200)
"""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from benchmarks import count_argument
from benchmarks.overhead import TIMEOUT_S, Client, camera_jpeg, percentile, wait_online
from edge_vlm.ingest.api.answers import DAEMON_STAGES
from tests.support.broker import Mosquitto

KEY = "benchmark-key-0123456789"
PROMPT = "Who is at the door?"
WARM_UP = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_daemon(broker: Mosquitto, work: Path, port: int) -> subprocess.Popen[bytes]:
    config = {"node_id": "bench", "mqtt": {"port": broker.port}, "cameras": [{"id": "bench_cam"}],
              "logging": {"level": "WARNING"},
              "http": {"enabled": True, "port": port, "api_key_env": "EDGE_VLM_BENCH_KEY"}}
    (work / "edge_vlm.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(work / "edge_vlm.yaml")],
                            env={**os.environ, "EDGE_VLM_BENCH_KEY": KEY})


def ask_http(http: httpx.Client, image: str) -> float:
    """Milliseconds to the first chunk of the answer, less the model's time."""
    body = {"model": "edge-vlm", "messages": [{"role": "user", "content": PROMPT, "images": [image]}]}
    start = time.perf_counter()
    with http.stream("POST", "/api/chat", json=body) as response:
        response.raise_for_status()
        lines = response.iter_lines()
        first = next(lines)
        arrived = time.perf_counter()
        last = json.loads(first)
        for line in lines:
            last = json.loads(line)
    return (arrived - start) * 1000 - float(last["eval_duration"]) / 1_000_000


def ask_mqtt(client: Client, image: str) -> float:
    request = json.dumps({"image": image, "prompt": PROMPT, "reply_to": "edge_vlm/response/bench"}).encode()
    start, arrived, answer = client.send_and_wait("edge_vlm/request", request)
    timings = json.loads(answer)["timings_ms"]
    return (arrived - start) * 1000 - sum(float(ms) for stage, ms in timings.items() if stage not in DAEMON_STAGES)


def main() -> None:
    requests = count_argument(__doc__, 200)
    jpeg = camera_jpeg()
    image = base64.b64encode(jpeg).decode()
    print(f"{requests} requests per path, 1920x1080 JPEG of {len(jpeg) / 1000:.0f} kB, opencv backend\n")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        port = free_port()
        daemon = start_daemon(broker, Path(tmp), port)
        try:
            status = Client(broker.port, "edge_vlm/bench/status")
            replies = Client(broker.port, "edge_vlm/response/bench")
            wait_online(status)
            http_ms, mqtt_ms = [], []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT_S,
                              headers={"Authorization": f"Bearer {KEY}"}) as http:
                for n in range(requests + WARM_UP):
                    over_http, over_mqtt = ask_http(http, image), ask_mqtt(replies, image)
                    if n >= WARM_UP:
                        http_ms.append(over_http)
                        mqtt_ms.append(over_mqtt)
            replies.close()
            status.close()
        finally:
            daemon.terminate()
            daemon.wait(TIMEOUT_S)
            broker.stop()
    for name, times in (("HTTP (/api/chat, first chunk)", http_ms), ("MQTT (<base>/request, reply)", mqtt_ms)):
        print(f"{name:31} daemon time: median {statistics.median(times):5.1f} ms, p95 {percentile(times, 95):5.1f} ms")
    added = [h - m for h, m in zip(http_ms, mqtt_ms, strict=True)]  # each pair asked one after the other
    print(f"\nwhat the HTTP layer adds (each HTTP request less the MQTT one after it): median "
          f"{statistics.median(added):+.1f} ms, p95 {percentile(added, 95):+.1f} ms (targets: <= 10 ms, <= 30 ms); "
          f"ratio of the medians {statistics.median(http_ms) / statistics.median(mqtt_ms):.2f}")

if __name__ == "__main__":
    main()
