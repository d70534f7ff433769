"""Frigate's HTTP API where edge_vlm reads it: ``GET /api/events/<id>/snapshot.jpg``, answered as
Frigate answers (the event's JPEG, or 404 with ``{"success": false, "message": "Snapshot not
available"}`` for an event it keeps no snapshot of), with every request recorded."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SNAPSHOT = re.compile(r"^/api/events/([^/]+)/snapshot\.jpg(?:\?.*)?$")


class FrigateApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.snapshots: dict[str, bytes] = {}  # event id -> JPEG
        self.requests: list[str] = []  # the paths asked for, in order
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FrigateApi

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        found = SNAPSHOT.match(self.path)
        jpeg = self.server.snapshots.get(found.group(1)) if found else None
        if jpeg is None:
            body = json.dumps({"success": False, "message": "Snapshot not available"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        else:
            body = jpeg
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
