"""The ``http`` source: one GET of the camera's snapshot URL per grab.

Most IP cameras serve their current picture at a URL, and Frigate serves each camera's newest frame
at ``/api/<camera>/latest.jpg``; fetching it only when a description is wanted costs nothing in
between, unlike holding an RTSP stream open. The standard library does the request (no extra
dependency): ``basic`` sends its header up front, ``digest`` answers the server's challenge,
``bearer`` sends the token. The credentials never follow a redirect to another host, and
environment proxies are ignored (a camera is on the LAN). Every failure is a ``SourceError`` (or
the ``ImageError`` of a refused body) saying what went wrong, without a secret in it.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from typing import IO, Any
from urllib.parse import urlsplit

from edge_vlm.config.secrets import describe_source
from edge_vlm.config.sources import HttpSourceConfig
from edge_vlm.errors import ImageError, SourceError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.redact import redact, redact_url

CHUNK_BYTES = 64 * 1024


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


def _reason(exc: BaseException, timeout_s: float) -> str:  # noqa: PLR0911 - one return per kind of failure
    """A short reason for a failed connection or read."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
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
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _SameOriginAuth()]
        if not config.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
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
            manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            manager.add_password(None, f"{scheme}://{netloc}/", config.username or "", secret)
            handlers.append(_Digest(manager))
        self._opener = urllib.request.build_opener(*handlers)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def grab(self) -> Frame:
        timeout_s = self._config.timeout_s
        deadline = time.monotonic() + timeout_s
        request = urllib.request.Request(self._config.url, headers=self._headers)  # noqa: S310 - config allows http(s) only
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                captured_at = time.time()
                if response.status != 200:
                    raise self._failed(f"HTTP {response.status} {response.reason}")
                body = self._read(response, deadline)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._http_error(exc.code) from None
        except urllib.error.URLError as exc:
            raise self._failed(_reason(exc.reason, timeout_s) if isinstance(exc.reason, BaseException)
                               else str(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._failed(_reason(exc, timeout_s)) from None
        except ValueError as exc:  # the digest handler met a challenge of another scheme, a header value refused
            reason = str(exc)
            if reason.startswith("Invalid header value"):
                where = describe_source(self._config.password_env, self._config.password_credential)
                reason = f"the secret in {where} holds a character an HTTP header cannot carry (a line break?)"
            raise SourceError(f"http snapshot of camera {self.camera} refused by {self._url}: {self._scrub(reason)}",
                              code="auth_failed" if self._config.auth == "digest" else "camera_unavailable",
                              ) from None
        return decode_image(body, camera=self.camera, captured_at=captured_at, max_bytes=self._max_bytes,
                            max_pixels=self._max_pixels, min_long_side=self._min_long_side)

    def _read(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
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
            if time.monotonic() > deadline:
                raise TimeoutError
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
