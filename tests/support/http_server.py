"""A camera's HTTP server for the tests: one JPEG behind each kind of auth, and each kind of failure.

Slow cameras: ``/slowheaders.jpg`` sends its status line and headers a byte at a time (every
``?every=`` seconds, default 1), ``/slowbody.jpg`` its headers at once and then the JPEG a byte at a
time; each byte alone arrives well within any per-read timeout, the whole does not.

Digest is the server side of RFC 7616 (MD5, qop=auth): a fresh nonce per challenge, and the client's
response recomputed from the password, so a client that only looks right is refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support import images

USER = "admin"
PASSWORD = "s3cret-pass"
TOKEN = "tok-0123456789abcdef"
REALM = "camera"
JPEG = images.jpeg(320, 240)
HUGE_BYTES = 64_000_000
CHUNK = b"\0" * 65_536
TRICKLE_EVERY_S = 1.0  # the slow routes' default pace: a byte per second
# The clip tests' scene (/scene.jpg): a yard, and an object in it while object_in_view is set.
YARD_JPEG = images.encode(images.scene(640, 360, seed=3), quality=90)
OBJECT_JPEG = images.encode(images.with_square(images.scene(640, 360, seed=3)), quality=90)
# The slow header's padding: at a byte per 0.1 s the headers alone take over a minute.
PADDING = "x" * 600


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class CameraServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "http" if tls is None else "https"
        self.stopping = threading.Event()  # wakes the slow handlers at teardown
        self.nonces: set[str] = set()
        self.seen_auth: list[str | None] = []  # the Authorization header of each request
        self.sent_bytes = 0  # body bytes of the huge responses that made it out
        self.stream_ended = threading.Event()  # set once a huge response stopped (done, or the client hung up)
        self.trickling = threading.Event()  # set once a slow route has begun to answer
        self.trickle_ended = threading.Event()  # and once it stopped (done, or the client hung up)
        self.object_in_view = threading.Event()  # /scene.jpg shows the object
        self.scene_down = threading.Event()  # /scene.jpg answers 503
        self.holding = threading.Event()  # /held.jpg has a request, which it answers once released
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (needs the openssl command)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[CameraServer]:
    server = CameraServer(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: CameraServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: PLR0911, PLR0912 - one branch per route
        path, auth = urlsplit(self.path).path, self.headers.get("Authorization")
        self.server.seen_auth.append(auth)
        if path in ("/snapshot.jpg", "/api/front_door/latest.jpg"):
            return self._send(200, JPEG)
        if path == "/scene.jpg" and self.server.scene_down.is_set():
            return self._send(503, b"")
        if path == "/scene.jpg":
            return self._send(200, OBJECT_JPEG if self.server.object_in_view.is_set() else YARD_JPEG)
        if path == "/basic.jpg":
            ok = auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return self._send(200, JPEG) if ok else self._send(401, b"", f'Basic realm="{REALM}"')
        if path == "/bearer.jpg":
            return self._send(200, JPEG) if auth == f"Bearer {TOKEN}" else self._send(401, b"", "Bearer")
        if path == "/digest.jpg":
            if self._digest_ok(auth):
                return self._send(200, JPEG)
            nonce = secrets.token_hex(16)
            self.server.nonces.add(nonce)
            return self._send(401, b"", f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5')
        if path == "/forbidden.jpg":
            return self._send(403, b"")
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(urlsplit(self.path).query).get("to", ["/snapshot.jpg"])[0])
            return self.end_headers()
        if path == "/error":
            return self._send(500, b"oops")
        if path == "/page.html":
            return self._send(200, b"<html><body>Login</body></html>", content_type="text/html")
        if path == "/held.jpg":  # the JPEG, once the test releases it
            self.server.holding.set()
            self.server.released.wait(30)
            return self._send(200, JPEG)
        if path == "/slow.jpg":  # no answer until the test is over
            self.server.stopping.wait(10)
            return None
        if path in ("/huge.jpg", "/endless.jpg", "/dribble.jpg"):
            return self._stream(path)
        if path in ("/slowheaders.jpg", "/slowbody.jpg"):
            return self._trickle(path == "/slowheaders.jpg", float(parse_qs(urlsplit(self.path).query).get(
                "every", [str(TRICKLE_EVERY_S)])[0]))
        return self._send(404, b"")

    def _send(self, status: int, body: bytes, challenge: str | None = None, content_type: str = "image/jpeg") -> None:
        self.send_response(status)
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, path: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if path == "/huge.jpg":
            self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        try:
            while self.server.sent_bytes < HUGE_BYTES and not self.server.stopping.is_set():
                if path == "/dribble.jpg":  # a byte at a time: each read is quick, the whole is not
                    self.server.stopping.wait(0.05)
                self.wfile.write(CHUNK[:1] if path == "/dribble.jpg" else CHUNK)
                self.server.sent_bytes += 1 if path == "/dribble.jpg" else len(CHUNK)
        except OSError:  # the client hung up, as it should
            pass
        finally:
            self.server.stream_ended.set()

    def _trickle(self, headers_too: bool, every: float) -> None:
        """The JPEG as a 200, a byte every ``every`` seconds: from the status line on, or after the headers."""
        head = (f"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: {PADDING}\r\n"
                f"Content-Length: {len(JPEG)}\r\n\r\n").encode()
        self.close_connection = True
        try:
            if not headers_too:
                self.wfile.write(head)
            self.server.trickling.set()
            for byte in (head if headers_too else b"") + JPEG:
                if self.server.stopping.wait(every):
                    return
                self.wfile.write(bytes([byte]))
        except OSError:  # the client hung up, as it should
            pass
        finally:
            self.server.trickle_ended.set()

    def _digest_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Digest "):
            return False
        fields = {key: quoted or bare for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]*))', header)}
        if (fields.get("username"), fields.get("realm"), fields.get("uri"), fields.get("qop")) != (
            USER, REALM, self.path, "auth",
        ) or fields.get("nonce") not in self.server.nonces:
            return False
        ha1 = _md5(f"{USER}:{REALM}:{PASSWORD}")
        ha2 = _md5(f"GET:{self.path}")
        expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))
