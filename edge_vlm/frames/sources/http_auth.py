"""Credentials over urllib: sent to the camera's own origin only, a digest challenge answered once."""

from __future__ import annotations

import http.client
import urllib.request
from typing import IO, Any
from urllib.parse import urlsplit


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class SameOriginAuth(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only, with the Authorization header to the same scheme, host and port."""

    def redirect_request(  # noqa: PLR0917 - the base class's signature
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: http.client.HTTPMessage, newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None or origin(new.full_url)[0] not in ("http", "https"):
            return None  # not followed: the redirect's status becomes the error
        if origin(new.full_url) != origin(req.full_url):
            new.remove_header("Authorization")
        return new


class Digest(urllib.request.HTTPDigestAuthHandler):
    """Answers a digest challenge once (urllib would retry a refused answer 5 times), closing the
    challenge's response, which urllib leaves open."""

    def http_error_401(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage,
    ) -> Any:
        fp.close()
        if req.get_header("Authorization"):  # our answer was refused
            return None
        return super().http_error_401(req, fp, code, msg, headers)
