"""The ``http`` source: one GET of the camera's snapshot URL per grab.

Most IP cameras serve their current picture at a URL, and Frigate serves each camera's newest frame
at ``/api/<camera>/latest.jpg``; fetching it only when a description is wanted costs nothing in
between, unlike holding an RTSP stream open. The standard library does the request (no extra
dependency): ``basic`` sends its header up front, ``digest`` answers the server's challenge,
``bearer`` sends the token. The credentials never follow a redirect to another host, and
environment proxies are ignored (a camera is on the LAN). Every failure is a ``SourceError`` (or
the ``ImageError`` of a refused body) saying what went wrong, without a secret in it.

A grab has ``timeout_s`` in all: name resolution, connecting, TLS, the request, the status line and
headers, the body, over every redirect and digest round (``http_deadline.Deadline``). ``stop()``
ends a grab in flight at once (``cancelled``), so a camera never holds up the daemon's stop. How
credentials go with a request is in ``http_auth``.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from http import HTTPStatus

from edge_vlm.config.secrets import describe_source
from edge_vlm.config.sources import HttpSourceConfig
from edge_vlm.core.errors import ErrorCode, ImageError, SourceError
from edge_vlm.core.redact import redact, redact_url
from edge_vlm.frames import Frame, decode_image
from edge_vlm.frames.sources.http_auth import Digest, SameOriginAuth, origin
from edge_vlm.frames.sources.http_deadline import Deadline, HttpHandler, HttpsHandler, read_at_most


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
        self._in_flight: set[Deadline] = set()
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
            scheme, netloc = origin(config.url)
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
        deadline = Deadline(self._config.timeout_s)
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

    def _opener(self, deadline: Deadline) -> urllib.request.OpenerDirector:
        """A new opener per grab: its handlers connect through this grab's deadline, and the digest
        handler's state (urllib keeps some) is the grab's own."""
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), SameOriginAuth(),
                                                      HttpHandler(deadline), HttpsHandler(deadline, self._tls)]
        if self._digest is not None:
            handlers.append(Digest(self._digest))
        return urllib.request.build_opener(*handlers)

    def _fetch(self, deadline: Deadline) -> tuple[bytes, float]:
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
                              code=ErrorCode.AUTH_FAILED if self._config.auth == "digest" else "camera_unavailable",
                              ) from None
        ended = self._ended(deadline)  # a body cut short when the sockets were shut down
        if ended is not None:
            raise ended
        return body, captured_at

    def _ended(self, deadline: Deadline) -> SourceError | None:
        """Why the grab failed when its deadline ended it (the failure is only what that caused)."""
        if not deadline.ended:
            return None
        if deadline.cancelled:
            return self._cancelled()
        return self._failed(_timed_out(deadline.seconds))

    def _cancelled(self) -> SourceError:
        return SourceError(f"http snapshot of camera {self.camera} from {self._url} cancelled: the source was "
                           "stopped (the daemon is stopping, or reloading its configuration)", code=ErrorCode.CANCELLED)

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        """The body, at most max_bytes (limits.max_payload_bytes) of it; its time is bounded by the deadline."""
        limit = self._max_bytes
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise self._too_large(f"announces {int(length)} bytes (Content-Length), over the limit of {limit} "
                                  "(limits.max_payload_bytes); not downloaded")
        body = read_at_most(response, limit)
        if body is None:
            raise self._too_large(f"goes on past the limit of {limit} bytes (limits.max_payload_bytes); "
                                  "the rest was not downloaded")
        return body

    def _too_large(self, what: str) -> ImageError:
        return ImageError(f"http snapshot of camera {self.camera} from {self._url} {what}",
                          code=ErrorCode.PAYLOAD_TOO_LARGE)

    def _http_error(self, status: int) -> SourceError:
        try:
            text = f"HTTP {status} {HTTPStatus(status).phrase}"
        except ValueError:
            text = f"HTTP {status}"
        if status not in (401, 403):
            failed = self._failed(text)
            failed.status = status
            return failed
        env = describe_source(self._config.password_env, self._config.password_credential)
        hint = {"none": "the camera wants credentials: set auth, username and password_env",
                "bearer": f"check the token in {env}"}.get(
            self._config.auth, f"check username and the password in {env}")
        return SourceError(f"http snapshot of camera {self.camera} refused: {text} from {self._url}: {hint}",
                           code=ErrorCode.AUTH_FAILED)

    def _scrub(self, text: str) -> str:
        """``text`` without the secret (or the header made of it) and URL credentials."""
        for hidden in self._hidden:
            text = text.replace(hidden, "***")
        return redact(text)

    def _failed(self, reason: str) -> SourceError:
        return SourceError(f"http snapshot of camera {self.camera} from {self._url} failed: {self._scrub(reason)}",
                           code=ErrorCode.CAMERA_UNAVAILABLE)
