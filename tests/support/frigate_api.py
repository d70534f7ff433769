"""Frigate's HTTP API where edge_vlm uses it, answered as Frigate's code answers:

- ``GET /api/events/<id>/snapshot.jpg``: the event's JPEG, or 404 ``{"success": false, "message":
  "Snapshot not available"}`` for an event it keeps no snapshot of;
- ``GET /api/events/<id>``: the event (``end_time`` null while tracked), or 404 ``"Event not found"``;
- ``POST /api/events/<id>/description`` with ``{"description": ...}``: stored, 200 ``{"success": true}``;
- ``POST /api/login`` with ``{"user", "password"}``: 200 and the JWT as cookie ``frigate_token``, or 401.

With ``users`` set, the API (its authenticated port) takes a request only with a valid token, as a
cookie or ``Authorization: Bearer``; a token can be expired to see the client log in again. Every
request is recorded."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SNAPSHOT = re.compile(r"^/api/events/([^/?]+)/snapshot\.jpg(?:\?.*)?$")
EVENT = re.compile(r"^/api/events/([^/?]+)$")
DESCRIPTION = re.compile(r"^/api/events/([^/?]+)/description$")


class FrigateApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.snapshots: dict[str, bytes] = {}  # event id -> JPEG
        self.events: dict[str, float | None] = {}  # event id -> its end_time (None: still tracked)
        self.descriptions: dict[str, str] = {}  # event id -> what was written to it
        self.users: dict[str, str] = {}  # user -> password; empty: no login needed (the internal port)
        self.tokens: set[str] = set()
        self.requests: list[str] = []  # "METHOD path", in order
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def wait_for_description(self, event_id: str, timeout: float = 10.0) -> str:
        with self.changed:
            if not self.changed.wait_for(lambda: event_id in self.descriptions, timeout):
                raise AssertionError(f"no description written to {event_id} within {timeout} s: {self.requests}")
            return self.descriptions[event_id]


class _Handler(BaseHTTPRequestHandler):
    server: FrigateApi

    def _answer(self, status: int, body: Any, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> None:
        with self.server.changed:
            self.server.requests.append(f"{self.command} {self.path}")
            self.server.changed.notify_all()

    def _allowed(self) -> bool:
        if not self.server.users:
            return True
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        cookie = re.search(r"frigate_token=([^;]+)", self.headers.get("Cookie") or "")
        if bearer in self.server.tokens or (cookie is not None and cookie.group(1) in self.server.tokens):
            return True
        self._answer(401, {"message": "Unauthorized"})
        return False

    def do_GET(self) -> None:
        self._record()
        if not self._allowed():
            return
        if (found := SNAPSHOT.match(self.path)) and found.group(1) in self.server.snapshots:
            self._answer(200, self.server.snapshots[found.group(1)], "image/jpeg")
        elif found:
            self._answer(404, {"success": False, "message": "Snapshot not available"})
        elif (event := EVENT.match(self.path)) and event.group(1) in self.server.events:
            self._answer(200, {"id": event.group(1), "end_time": self.server.events[event.group(1)]})
        else:
            self._answer(404, "Event not found")

    def do_POST(self) -> None:
        self._record()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        if self.path == "/api/login":
            if self.server.users.get(body.get("user")) != body.get("password"):
                self._answer(401, {"message": "Login failed"})
                return
            token = secrets.token_hex(16)
            self.server.tokens.add(token)
            self._answer(200, b"", headers={"Set-Cookie": f"frigate_token={token}; HttpOnly; Path=/"})
            return
        if not self._allowed():
            return
        found = DESCRIPTION.match(self.path)
        if found is None or found.group(1) not in self.server.events:
            self._answer(404, {"success": False, "message": "Event not found"})
            return
        with self.server.changed:
            self.server.descriptions[found.group(1)] = body["description"]
            self.server.changed.notify_all()
        self._answer(200, {"success": True, "message": f"Event {found.group(1)} description set"})

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read ``requests``."""


@contextmanager
def frigate_api() -> Iterator[FrigateApi]:
    server = FrigateApi()
    thread = threading.Thread(target=server.serve_forever, name="frigate-api", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
