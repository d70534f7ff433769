"""Home Assistant's websocket API, with the standard library only: commands and event subscriptions.

A client of RFC 6455 just large enough for Home Assistant (aiohttp on the other end): text frames,
masked as a client must, unfragmented on the way out; fragments, pings and close on the way in; no
extensions offered, so no compression. A reader thread files each message under its ``id``:
command results for ``command()``, events for ``events()`` and ``wait_event()``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S = 30.0

_TEXT, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x0, 0x8, 0x9, 0xA


class HaWebSocketError(AssertionError):
    """A command Home Assistant refused, or a connection that ended; a failed test says which."""


class HaWebSocket:
    """An authenticated connection to ``<url>/api/websocket``."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)
        self._send_lock = threading.Lock()
        self._changed = threading.Condition()
        self._results: dict[int, dict[str, Any]] = {}
        self._events: dict[int, list[dict[str, Any]]] = {}
        self._next_id = 1
        self._closed: str | None = None
        self._handshake(parts.netloc)
        self._sock.settimeout(None)  # the reader thread blocks; close() ends it
        assert self._receive()["type"] == "auth_required"
        self._send({"type": "auth", "access_token": token})
        reply = self._receive()
        if reply["type"] != "auth_ok":
            raise HaWebSocketError(f"websocket auth refused: {reply}")
        self._reader = threading.Thread(target=self._read_forever, name="ha-websocket", daemon=True)
        self._reader.start()

    def _handshake(self, host: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            f"GET /api/websocket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(1)
            if not chunk:
                raise HaWebSocketError(f"websocket handshake: connection closed after {head!r}")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise HaWebSocketError(f"websocket handshake refused: {status.decode(errors='replace')}")

    # --- frames -------------------------------------------------------------------------------------

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise HaWebSocketError("websocket closed by Home Assistant")
            data += chunk
        return data

    def _frame(self) -> tuple[int, bool, bytes]:
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._exactly(8))
        mask = self._exactly(4) if second & 0x80 else b""
        payload = self._exactly(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return first & 0x0F, bool(first & 0x80), payload

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._send_lock:
            self._sock.sendall(header + mask + masked)

    def _send(self, message: dict[str, Any]) -> None:
        self._send_frame(_TEXT, json.dumps(message).encode())

    def _receive(self) -> dict[str, Any]:
        """The next whole message (fragments joined; pings answered)."""
        parts: list[bytes] = []
        while True:
            opcode, final, payload = self._frame()
            if opcode == _PING:
                self._send_frame(_PONG, payload)
                continue
            if opcode == _PONG:
                continue
            if opcode == _CLOSE:
                raise HaWebSocketError(f"websocket closed by Home Assistant: {payload!r}")
            if opcode not in (_TEXT, _CONTINUATION):
                raise HaWebSocketError(f"unexpected websocket opcode {opcode}")
            parts.append(payload)
            if final:
                message: dict[str, Any] = json.loads(b"".join(parts))
                return message

    def _read_forever(self) -> None:
        try:
            while True:
                message = self._receive()
                with self._changed:
                    if message.get("type") == "event":
                        self._events.setdefault(message["id"], []).append(message["event"])
                    elif message.get("type") == "result":
                        self._results[message["id"]] = message
                    self._changed.notify_all()
        except (OSError, HaWebSocketError, ValueError) as error:
            with self._changed:
                self._closed = str(error) or type(error).__name__
                self._changed.notify_all()

    # --- the API -----------------------------------------------------------------------------------

    def command(self, kind: str, timeout: float = TIMEOUT_S, **fields: Any) -> Any:
        """Send ``{"type": kind, **fields}``; its result, or HaWebSocketError with Home Assistant's error."""
        return self._command(kind, timeout, **fields)[1]

    def _command(self, kind: str, timeout: float = TIMEOUT_S, **fields: Any) -> tuple[int, Any]:
        with self._changed:
            ident = self._next_id
            self._next_id += 1
        self._send({"id": ident, "type": kind, **fields})
        with self._changed:
            if not self._changed.wait_for(lambda: ident in self._results or self._closed is not None, timeout):
                raise HaWebSocketError(f"no answer to {kind} within {timeout} s")
            if ident not in self._results:
                raise HaWebSocketError(f"{kind}: {self._closed}")
            reply = self._results.pop(ident)
        if not reply.get("success"):
            raise HaWebSocketError(f"{kind} refused: {reply.get('error')}")
        return ident, reply.get("result")

    def subscribe(self, event_type: str) -> int:
        """Subscribe to one event type; the subscription's id, for ``events`` and ``wait_event``."""
        ident, _ = self._command("subscribe_events", event_type=event_type)
        with self._changed:
            self._events.setdefault(ident, [])
        return ident

    def events(self, subscription: int) -> list[dict[str, Any]]:
        """The events of ``subscription`` so far, in order of arrival."""
        with self._changed:
            return list(self._events.get(subscription, []))

    def wait_event(self, subscription: int, where: Callable[[dict[str, Any]], bool], *, since: int = 0,
                   timeout: float = TIMEOUT_S, what: str = "an event") -> dict[str, Any]:
        """The first event of ``subscription`` from the ``since``-th on for which ``where`` holds,
        waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout

        def found() -> dict[str, Any] | None:
            return next((e for e in self._events.get(subscription, [])[since:] if where(e)), None)

        with self._changed:
            while (event := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed is not None:
                    seen = len(self._events.get(subscription, []))
                    closed = f"; the connection ended: {self._closed}" if self._closed else ""
                    raise HaWebSocketError(f"{what}: not seen within {timeout} s ({seen} other events{closed})")
                self._changed.wait(left)
            return event

    def close(self) -> None:
        with contextlib.suppress(OSError):  # Home Assistant may have closed it first
            self._send_frame(_CLOSE, struct.pack(">H", 1000))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(5)

    def __enter__(self) -> HaWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
