"""How soon a streamed answer begins: the same 1920x1080 JPEG and question asked over the HTTP API
(Ollama's /api/chat, streamed) of the daemon on the NPU path, with the runtime's and imgenc's
stand-ins taking Rockchip's published RK3588 times for Qwen2-VL-2B (w8a8, runtime 1.2.0: the vision
encoder 3.28 s, decode 16.6 tokens/s: models/README.md), the answer 40 tokens long. It measures
the time to the first piece of text, as a client that shows the answer as it comes sees it, and to
the end of the answer, which is when a client told the answer whole (before token streaming, every
client) first sees anything. The stand-in's prefill takes no time: on the board, add its 0.63 s to
both.

Run: .venv/bin/python -m benchmarks.first_token [REQUESTS]   (default 5)
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import count_argument
from edge_vlm.config.models import AppConfig
from edge_vlm.service import Service
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.imgenc_standin import write_model
from tests.support.native import build_fake_rkllmrt, write_model_file
from tests.support.npu import vlm_backend

KEY = "benchmark-key-0123456789"
ENCODER_MS = 3280  # RK3588, Qwen2-VL-2B's vision encoder (rknn-llm's published table)
TOKEN_MS = 60  # 16.6 tokens/s
ANSWER = " ".join(["word"] * 39) + "."  # 40 tokens as the stand-in splits it
TIMEOUT_S = 120.0


def ask(http: httpx.Client, image: bytes) -> tuple[float, float, str]:
    """Seconds to the first piece of text and to the end, and the text."""
    body = {"model": "edge-vlm", "messages": [{"role": "user", "content": f"[[reply:{ANSWER}]] Who is there?",
                                               "images": [base64.b64encode(image).decode()]}]}
    start = time.perf_counter()
    first, pieces = None, []
    with http.stream("POST", "/api/chat", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            if chunk.get("message", {}).get("content"):
                first = first if first is not None else time.perf_counter() - start
                pieces.append(chunk["message"]["content"])
    assert first is not None, "no text came"
    return first, time.perf_counter() - start, "".join(pieces)


def main() -> None:
    requests = count_argument(__doc__, 5)
    image = images.jpeg(1920, 1080, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        library = build_fake_rkllmrt("1.3", work / "lib")
        broker = Mosquitto(work)
        broker.start()
        backend = vlm_backend(work, library, abi="1.3")
        write_model(Path(backend["encoder"]["model"]), delay_ms=ENCODER_MS)
        write_model_file(Path(backend["llm"]["model"]), token_delay_ms=TOKEN_MS)
        os.environ["EDGE_VLM_BENCH_KEY"] = KEY
        config = AppConfig.model_validate({
            "node_id": "bench", "mqtt": {"port": broker.port}, "backend": backend, "cameras": [{"id": "cam"}],
            "logging": {"level": "WARNING"}, "http": {"enabled": True, "port": 0, "api_key_env": "EDGE_VLM_BENCH_KEY"},
        })
        service = Service(config, password=None)
        service.start()
        try:
            assert service.api is not None
            url = f"http://127.0.0.1:{service.api.port}"
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT_S) as http:
                results = [ask(http, image) for _ in range(requests)]
        finally:
            service.stop()
            broker.stop()
    assert all(text == ANSWER for *_, text in results), results[0][2]
    first = statistics.median(r[0] for r in results) * 1000
    whole = statistics.median(r[1] for r in results) * 1000
    print(f"{requests} streamed requests, 1920x1080 JPEG, stand-ins at RK3588's published times "
          f"(encoder {ENCODER_MS} ms, {TOKEN_MS} ms a token), a 40-token answer")
    print(f"first text after: median {first:.0f} ms (the encoder, then one token)")
    print(f"whole answer after: median {whole:.0f} ms (what a client told the answer whole waits)")
    print(f"the answer begins {whole - first:.0f} ms sooner, {whole / first:.2f}x as soon, streamed")


if __name__ == "__main__":
    main()
