"""The deadline of one http snapshot grab (or image URL fetch), the urllib handlers that connect
through it, and a body read up to a limit.

A grab has ``timeout_s`` in all: name resolution, connecting, TLS, the request, the status line and
headers, the body, over every redirect and digest round. ``Deadline.end(cancelled=True)`` ends a
grab in flight at once, so a camera never holds up the daemon's stop.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Sequence
from types import TracebackType
from typing import Any

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


class Deadline:
    """The end of one grab, for every connection the grab opens (a redirect's, digest's second round).

    A socket timeout bounds each read, not the whole: a camera that sends a byte a second never trips
    it, and http.client reads the status line and all headers in one call, so checking the clock
    between our own reads cannot help either. So a timer shuts the grab's sockets down at the
    deadline (or ``stop()`` does, ``cancelled``): the blocked read returns at once, and the grab
    says why. Each socket is watched through a duplicate of it, since TLS replaces the socket object
    (the connection stays the same). ``getaddrinfo`` has no timeout of its own (a DNS server that
    does not answer holds it for the resolver's whole retry schedule): a name is resolved on a
    helper thread, waited for until the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ended = False  # the timer fired, or end() was called
        self.cancelled = False  # by end(cancelled=True): the source was stopped
        self._at = time.monotonic() + seconds
        self._changed = threading.Condition()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self.end)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._timer.cancel()
        with self._changed:
            for duplicate in self._sockets:
                duplicate.close()
            self._sockets.clear()

    def end(self, *, cancelled: bool = False) -> None:
        """Shut the grab's connections down: whatever reads or writes on them returns at once."""
        with self._changed:
            if self.ended:
                return
            self.ended, self.cancelled = True, cancelled
            for duplicate in self._sockets:
                _shut(duplicate)
            self._changed.notify_all()

    def remaining(self) -> float:
        """Seconds left; TimeoutError when none are."""
        left = self._at - time.monotonic()
        if self.ended or left <= 0:
            raise TimeoutError
        return left

    def connect(self, address: tuple[str, int], timeout: object = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """``socket.create_connection`` for http.client, within the deadline (``timeout`` is the
        per-operation one urllib passes: the deadline replaces it)."""
        host, port = address
        failure: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, sockaddr in self._resolve(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                self._watch(sock)
                sock.settimeout(self.remaining())
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                if self.ended:
                    break
            else:
                return sock
        raise failure

    def _watch(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._changed:
            self._sockets.append(duplicate)
            if self.ended:
                _shut(duplicate)

    def _resolve(self, host: str, port: int) -> Sequence[AddressInfo]:
        try:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass  # a name, not an address
        found: list[AddressInfo] = []
        failed: list[OSError] = []

        def resolve() -> None:
            try:
                found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as exc:
                failed.append(exc)
            with self._changed:
                self._changed.notify_all()

        threading.Thread(target=resolve, name="edge_vlm-resolve", daemon=True).start()
        with self._changed:
            self._changed.wait_for(lambda: found or failed or self.ended, max(0.0, self._at - time.monotonic()))
        if failed:
            raise failed[0]
        if not found:
            raise TimeoutError
        return found


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected (yet, or any more): nothing to end
        sock.shutdown(socket.SHUT_RDWR)


class HttpHandler(urllib.request.HTTPHandler):
    """http:// connections that connect through the grab's deadline."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(host, **options)
        # http.client's own seam for how it connects (HTTPSConnection connects through it before TLS)
        connection._create_connection = self._deadline.connect  # type: ignore[attr-defined]
        return connection


class HttpsHandler(urllib.request.HTTPSHandler):
    """https:// connections that connect through the grab's deadline (TLS on the same socket)."""

    def __init__(self, deadline: Deadline, context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self._deadline = deadline
        self._tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(host, context=self._tls, **options)
        connection._create_connection = self._deadline.connect  # type: ignore[attr-defined]
        return connection


CHUNK_BYTES = 64 * 1024


def read_at_most(response: http.client.HTTPResponse, limit: int) -> bytes | None:
    """The body, or None when it goes past ``limit`` bytes (no more of it is read); the time it
    takes is bounded by the grab's deadline."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = response.read1(min(CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)
