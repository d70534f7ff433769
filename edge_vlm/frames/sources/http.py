"""The ``http`` source: one GET of the camera's snapshot URL per grab.

Most IP cameras serve their current picture at a URL, and Frigate serves each camera's newest frame
at ``/api/<camera>/latest.jpg``; fetching it only when a description is wanted costs nothing in
between, unlike holding an RTSP stream open. The standard library does the request (no extra
dependency): ``basic`` sends its header up front, ``digest`` answers the server's challenge,
``bearer`` sends the token. The credentials never follow a redirect to another host, and
environment proxies are ignored (a camera is on the LAN). Every failure is a ``SourceError`` (or
the ``ImageError`` of a refused body) saying what went wrong, without a secret in it.

A grab has ``timeout_s`` in all: name resolution, connecting, TLS, the request, the status line and
headers, the body, over every redirect and digest round (``_Deadline``). ``stop()`` ends a grab in
flight at once (``cancelled``), so a camera never holds up the daemon's stop.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from edge_vlm.config.secrets import describe_source
from edge_vlm.config.sources import HttpSourceConfig
from edge_vlm.errors import ImageError, SourceError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.redact import redact, redact_url

CHUNK_BYTES = 64 * 1024

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


class _Deadline:
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

    def __enter__(self) -> _Deadline:
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


class _HttpHandler(urllib.request.HTTPHandler):
    """http:// connections that connect through the grab's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(host, **options)
        # http.client's own seam for how it connects (HTTPSConnection connects through it before TLS)
        connection._create_connection = self._deadline.connect  # type: ignore[attr-defined]
        return connection


class _HttpsHandler(urllib.request.HTTPSHandler):
    """https:// connections that connect through the grab's deadline (TLS on the same socket)."""

    def __init__(self, deadline: _Deadline, context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self._deadline = deadline
        self._tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **options: Any) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(host, context=self._tls, **options)
        connection._create_connection = self._deadline.connect  # type: ignore[attr-defined]
        return connection


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _SameOriginAuth(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only, with the Authorization header to the same scheme, host and port."""

    def redirect_request(  # noqa: PLR0917 - the base class's signature
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: http.client.HTTPMessage, newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None or _origin(new.full_url)[0] not in ("http", "https"):
            return None  # not followed: the redirect's status becomes the error
        if _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


class _Digest(urllib.request.HTTPDigestAuthHandler):
    """Answers a digest challenge once (urllib would retry a refused answer 5 times), closing the
    challenge's response, which urllib leaves open."""

    def http_error_401(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage,
    ) -> Any:
        fp.close()
        if req.get_header("Authorization"):  # our answer was refused
            return None
        return super().http_error_401(req, fp, code, msg, headers)


def _timed_out(timeout_s: float) -> str:
    return f"timed out: no complete answer within timeout_s = {timeout_s:g} s"


def _reason(exc: BaseException, timeout_s: float) -> str:  # noqa: PLR0911 - one return per kind of failure
    """A short reason for a failed connection or read."""
    if isinstance(exc, TimeoutError):
        return _timed_out(timeout_s)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):  # http.client.RemoteDisconnected too
        return "the camera closed the connection"
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); verify_tls: false accepts a self-signed one"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:  # unreachable network, ...
        return exc.strerror
    return str(exc) or type(exc).__name__


class HttpSnapshotSource:
    """A camera's current frame, fetched over HTTP(S) on each ``grab()``."""

    instant = False

    def __init__(self, camera: str, config: HttpSourceConfig, *, password: str | None, max_bytes: int,
                 max_pixels: int, min_long_side: int | None) -> None:
        self.camera = camera
        self._config = config
        self._max_bytes, self._max_pixels, self._min_long_side = max_bytes, max_pixels, min_long_side
        self._url = redact_url(config.url)
        self._headers: dict[str, str] = {}
        self._tls: ssl.SSLContext | None = None  # None: the default, verifying context
        if not config.verify_tls:
            self._tls = ssl.create_default_context()
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE
        self._digest: urllib.request.HTTPPasswordMgrWithDefaultRealm | None = None
        self._lock = threading.Lock()
        self._in_flight: set[_Deadline] = set()
        self._stopped = False
        secret = password or ""
        # What a failure message must never hold: the secret, and the header made of it (http.client
        # puts a refused header value, e.g. a token with a line break in it, into its ValueError).
        # Each piece between control characters too: a message may show them escaped ("\\r\\n").
        self._hidden = [v for v in (secret, *re.split(r"[\x00-\x1f\x7f]+", secret)) if len(v) >= 3]
        if config.auth == "basic":
            pair = f"{config.username}:{secret}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            self._hidden.append(base64.b64encode(pair).decode("ascii"))
        elif config.auth == "bearer":
            self._headers["Authorization"] = f"Bearer {secret}"
        elif config.auth == "digest":
            scheme, netloc = _origin(config.url)
            self._digest = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            self._digest.add_password(None, f"{scheme}://{netloc}/", config.username or "", secret)

    def start(self) -> None:
        with self._lock:
            self._stopped = False

    def stop(self) -> None:
        """End the grab in flight (its trigger gets ``cancelled``) and refuse new ones: the daemon's
        stop and reload must not wait for a camera, however long its timeout_s."""
        with self._lock:
            self._stopped = True
            in_flight = list(self._in_flight)
        for deadline in in_flight:
            deadline.end(cancelled=True)

    def grab(self) -> Frame:
        deadline = _Deadline(self._config.timeout_s)
        with self._lock:
            if self._stopped:
                raise self._cancelled()
            self._in_flight.add(deadline)
        try:
            with deadline:
                body, captured_at = self._fetch(deadline)
        finally:
            with self._lock:
                self._in_flight.discard(deadline)
        return decode_image(body, camera=self.camera, captured_at=captured_at, max_bytes=self._max_bytes,
                            max_pixels=self._max_pixels, min_long_side=self._min_long_side)

    def _opener(self, deadline: _Deadline) -> urllib.request.OpenerDirector:
        """A new opener per grab: its handlers connect through this grab's deadline, and the digest
        handler's state (urllib keeps some) is the grab's own."""
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _SameOriginAuth(),
                                                      _HttpHandler(deadline), _HttpsHandler(deadline, self._tls)]
        if self._digest is not None:
            handlers.append(_Digest(self._digest))
        return urllib.request.build_opener(*handlers)

    def _fetch(self, deadline: _Deadline) -> tuple[bytes, float]:
        """The body of a 200 answer and when its headers came; any failure as a SourceError or ImageError."""
        timeout_s = self._config.timeout_s
        request = urllib.request.Request(self._config.url, headers=self._headers)  # noqa: S310 - config allows http(s) only
        try:
            with self._opener(deadline).open(request, timeout=timeout_s) as response:
                captured_at = time.time()
                if response.status != 200:
                    raise self._failed(f"HTTP {response.status} {response.reason}")
                body = self._read(response)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._ended(deadline) or self._http_error(exc.code) from None
        except urllib.error.URLError as exc:
            raise self._ended(deadline) or self._failed(
                _reason(exc.reason, timeout_s) if isinstance(exc.reason, BaseException) else str(exc.reason),
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._ended(deadline) or self._failed(_reason(exc, timeout_s)) from None
        except ValueError as exc:  # the digest handler met a challenge of another scheme, a header value refused
            reason = str(exc)
            if reason.startswith("Invalid header value"):
                where = describe_source(self._config.password_env, self._config.password_credential)
                reason = f"the secret in {where} holds a character an HTTP header cannot carry (a line break?)"
            raise SourceError(f"http snapshot of camera {self.camera} refused by {self._url}: {self._scrub(reason)}",
                              code="auth_failed" if self._config.auth == "digest" else "camera_unavailable",
                              ) from None
        ended = self._ended(deadline)  # a body cut short when the sockets were shut down
        if ended is not None:
            raise ended
        return body, captured_at

    def _ended(self, deadline: _Deadline) -> SourceError | None:
        """Why the grab failed when its deadline ended it (the failure is only what that caused)."""
        if not deadline.ended:
            return None
        if deadline.cancelled:
            return self._cancelled()
        return self._failed(_timed_out(deadline.seconds))

    def _cancelled(self) -> SourceError:
        return SourceError(f"http snapshot of camera {self.camera} from {self._url} cancelled: the source was "
                           "stopped (the daemon is stopping, or reloading its configuration)", code="cancelled")

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        """The body, at most max_bytes (limits.max_payload_bytes) of it; its time is bounded by the deadline."""
        limit = self._max_bytes
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise self._too_large(f"announces {int(length)} bytes (Content-Length), over the limit of {limit} "
                                  "(limits.max_payload_bytes); not downloaded")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = response.read1(min(CHUNK_BYTES, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise self._too_large(f"goes on past the limit of {limit} bytes (limits.max_payload_bytes); "
                                  "the rest was not downloaded")
        return b"".join(chunks)

    def _too_large(self, what: str) -> ImageError:
        return ImageError(f"http snapshot of camera {self.camera} from {self._url} {what}", code="payload_too_large")

    def _http_error(self, status: int) -> SourceError:
        try:
            text = f"HTTP {status} {HTTPStatus(status).phrase}"
        except ValueError:
            text = f"HTTP {status}"
        if status not in (401, 403):
            return self._failed(text)
        env = describe_source(self._config.password_env, self._config.password_credential)
        hint = {"none": "the camera wants credentials: set auth, username and password_env",
                "bearer": f"check the token in {env}"}.get(
            self._config.auth, f"check username and the password in {env}")
        return SourceError(f"http snapshot of camera {self.camera} refused: {text} from {self._url}: {hint}",
                           code="auth_failed")

    def _scrub(self, text: str) -> str:
        """``text`` without the secret (or the header made of it) and URL credentials."""
        for hidden in self._hidden:
            text = text.replace(hidden, "***")
        return redact(text)

    def _failed(self, reason: str) -> SourceError:
        return SourceError(f"http snapshot of camera {self.camera} from {self._url} failed: {self._scrub(reason)}",
                           code="camera_unavailable")
