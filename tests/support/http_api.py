"""The HTTP API's tests' helpers: a running daemon's API and its clients, raw requests, the
runtime stand-in's call log, waiting for a condition."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ollama
import openai

from edge_vlm.service import Service
from tests.support import images
from tests.support.backends import GATE_TIMEOUT_S, GatedBackend

KEY = "edge-vlm-test-key-0123456789"
KEY_ENV = "EDGE_VLM_TEST_API_KEY"
PORCH = images.sample("front_door")
PORCH_TEXT = "1 person; 1 face visible; daylight"  # what the opencv backend says of it (then "; no motion")


class Api:
    def __init__(self, service: Service, backend: GatedBackend | None = None) -> None:
        """``backend``: the daemon's, when it is the gated opencv one."""
        assert service.api is not None
        self.service = service
        self.url = f"http://127.0.0.1:{service.api.port}"
        self._backend = backend
        self.clients: list[ollama.Client | openai.OpenAI] = []  # closed when the test ends

    @property
    def backend(self) -> GatedBackend:
        assert self._backend is not None, "the daemon's backend is not the gated one"
        return self._backend

    def ollama(self, key: str = KEY) -> ollama.Client:
        client = ollama.Client(host=self.url, headers={"Authorization": f"Bearer {key}"})
        self.clients.append(client)
        return client

    def openai(self, key: str = KEY) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)
        self.clients.append(client)
        return client

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


@contextmanager
def raw_request(api: Api, path: str, body: dict[str, Any]) -> Iterator[socket.socket]:
    """A request sent over a socket of its own, which is closed when the block ends: a client that
    goes away before the answer."""
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + data)
        yield sock


def runtime_calls(tmp_path: Path) -> list[dict[str, Any]]:
    """Every call the runtime's stand-in logged (a line still being written is not one yet)."""
    path = tmp_path / "rkllm-calls.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = GATE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.02)
